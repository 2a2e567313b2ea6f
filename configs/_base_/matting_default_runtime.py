# Runtime settings shared by the matting configs; the keys and values of mmagic's
# configs/_base_/matting_default_runtime.py. dimatting's engine reads only some of them (docs/configs.md
# lists which); the others are kept so that configs stay interchangeable with mmagic and are reported once
# as "not used" when training starts.

default_scope = 'mmagic'
save_dir = './work_dirs'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Differs from mmagic: `save_best`/`rule` keep the checkpoint with the lowest validation SAD as
    # best_SAD_iter_<N>.pth (the released numbers are the best of all validations, which mmagic leaves
    # to be picked by hand), and `max_keep_ckpts` keeps only the 3 latest iter_<N>.pth (mmagic keeps
    # all 25 of a 1000k run, about 8 GB). Also unlike mmagic, checkpoints follow --work-dir; `out_dir`
    # is not used.
    checkpoint=dict(
        type='CheckpointHook',
        interval=10000,
        by_epoch=False,
        out_dir=save_dir,
        save_best='SAD',
        rule='less',
        max_keep_ckpts=3,
    ),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=4),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='ConcatImageVisualizer',
    vis_backends=vis_backends,
    fn_key='trimap_path',
    img_keys=['pred_alpha', 'trimap', 'gt_merged', 'gt_alpha'],
    bgr2rgb=True,
)
custom_hooks = [dict(type='BasicVisualizationHook', interval=2000)]

log_level = 'INFO'
log_processor = dict(type='LogProcessor', by_epoch=False)

load_from = None
resume = False

# Quickstart: DIM stage 1 trained from scratch on a small synthetic Composition-1k-layout set, on a CPU,
# in under 10 minutes, then tested. Nothing to download:
#   python tools/train.py configs/dim/dim_quickstart.py
# makes data/synthetic (relative to the current directory) on the first run, trains, tests the best
# checkpoint and prints the metric table with the SAD of the trivial alpha=0.5 matte for comparison.
# Differences from stage 1 (all for speed on a CPU): no ImageNet VGG16 (encoder init_cfg=None) but Kaiming
# init of every conv (model init_cfg: the reference's Xavier init leaves a from-scratch DIM a constant
# predictor for hundreds of iterations), 96 px crops instead of 320, batch 4, lr 2e-4 instead of 1e-5, fused
# Adam (one pass over the 26M parameters instead of several: about 10% of a CPU step at this size), and 120
# iterations instead of a million: the validation SAD ratio to the alpha=0.5 matte is about 0.56 after 100 and
# 0.55 after 150 (0.52 after 400), so more iterations buy little, while 2-core CPUs differ a lot: 0.85 s per
# iteration on the AVX2 EPYC of docs/training.md, 2.8-4.1 s reported on another. It prints its expected total
# time after 4 iterations, and how to shorten it if that is over 10 minutes.
_base_ = ['./dim_stage1-v16_1xb1-1000k_comp1k.py']

experiment_name = 'dim_quickstart'
data_root = 'data/synthetic'
crop = 96

model = dict(
    init_cfg=dict(type='Kaiming', layer='Conv2d'),
    backbone=dict(encoder=dict(init_cfg=None)),
)

train_pipeline = [
    dict(type='LoadImageFromFile', key='alpha', color_type='grayscale'),
    dict(type='LoadImageFromFile', key='fg'),
    dict(type='LoadImageFromFile', key='bg'),
    dict(type='LoadImageFromFile', key='merged'),
    dict(type='CropAroundUnknown', keys=['alpha', 'merged', 'fg', 'bg'], crop_sizes=[crop, crop * 3 // 2]),
    dict(type='Flip', keys=['alpha', 'merged', 'fg', 'bg']),
    dict(type='Resize', keys=['alpha', 'merged', 'fg', 'bg'], scale=(crop, crop), keep_ratio=False),
    dict(type='GenerateTrimap', kernel_size=(1, 15)),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=train_pipeline),
)
val_dataloader = dict(num_workers=0, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=120, val_interval=40)
optim_wrapper = dict(optimizer=dict(type='Adam', lr=0.0002, fused=True))
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=40, max_keep_ckpts=1),
)
randomness = dict(seed=0)

# dimatting's keys for this config only: make the synthetic set if `data_root` has no annotation files
# (sizes (H, W)), and test the best checkpoint after training.
quickstart = dict(
    synthetic=dict(n_train=200, n_test=20, size=(192, 192), seed=0),
    test=True,
)

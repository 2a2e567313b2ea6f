# DIM stage 3: fine-tunes encoder-decoder and refiner together with all three losses; tests with the refined
# alpha. Inherits stage 1 (not stage 2) and repeats the refiner settings, as mmagic's
# configs/dim/dim_stage3-v16-pln_1xb1-1000k_comp1k.py does; same keys and values, plus `init_from` below.
_base_ = ['./dim_stage1-v16_1xb1-1000k_comp1k.py']

# No trailing slash, as in mmagic; inert either way (checkpoints go to the work dir).
save_dir = './work_dirs'
experiment_name = 'dim_stage3-v16-pln_1xb1-1000k_comp1k'

model = dict(
    refiner=dict(type='PlainRefiner'),
    loss_refine=dict(type='CharbonnierLoss'),
    train_cfg=dict(train_backbone=True, train_refiner=True),
    test_cfg=dict(refine=True),
)

# dimatting's addition: start from stage 2's result (mmagic has `load_from` with the released stage-2
# weights, dim_stage2_v16_pln_1x1_1000k_comp1k_SAD-52.3_20200607_171909-d83c4775.pth, only as a comment).
# With no `load_from`, the engine loads best_SAD_iter_*.pth from ./work_dirs/<init_from>/ (else its latest
# checkpoint, with a warning, else it stops and prints the stage-2 command). An explicit `load_from` wins.
init_from = 'dim_stage2-v16-pln_1xb1-1000k_comp1k'

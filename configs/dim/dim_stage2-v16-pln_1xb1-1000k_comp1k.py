# DIM stage 2: adds the plain refiner and trains only it (encoder-decoder frozen) with the refinement loss;
# tests with the refined alpha. Same keys and values as mmagic's
# configs/dim/dim_stage2-v16-pln_1xb1-1000k_comp1k.py, plus `init_from` below.
_base_ = ['./dim_stage1-v16_1xb1-1000k_comp1k.py']

save_dir = './work_dirs/'
experiment_name = 'dim_stage2-v16-pln_1xb1-1000k_comp1k'

model = dict(
    refiner=dict(type='PlainRefiner'),
    loss_refine=dict(type='CharbonnierLoss'),
    train_cfg=dict(train_backbone=False, train_refiner=True),
    test_cfg=dict(refine=True),
)

# dimatting's addition: start from stage 1's result. mmagic only has `load_from` (the released stage-1
# weights, dim_stage1_v16_1x1_1000k_comp1k_SAD-53.8_20200605_140257-979a420f.pth) as a comment, so as
# shipped its stage 2 refines an untrained decoder. With no `load_from`, the engine loads
# best_SAD_iter_*.pth from ./work_dirs/<init_from>/ (else that run's latest checkpoint, with a warning,
# else it stops and prints the stage-1 command). An explicit `load_from` always wins.
init_from = 'dim_stage1-v16_1xb1-1000k_comp1k'

# Adobe Composition-1k, laid out as `dim prepare-comp1k` (or mmagic's preprocess_comp1k_dataset.py) leaves it:
# two annotation files in `data_root` whose paths are relative to it. Same keys and values as mmagic's
# configs/_base_/datasets/comp1k.py; batch sizes and pipelines come from the DIM configs.

dataset_type = 'AdobeComp1kDataset'
data_root = 'data/adobe_composition-1k'

train_dataloader = dict(
    num_workers=4,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='training_list.json', test_mode=False),
)

val_dataloader = dict(
    num_workers=4,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='test_list.json', test_mode=True),
)
test_dataloader = val_dataloader

# Reported as SAD / MSE / GRAD / CONN (dimatting.metrics, same numbers as mmagic's metrics).
val_evaluator = [
    dict(type='SAD'),
    dict(type='MattingMSE'),
    dict(type='GradientError'),
    dict(type='ConnectivityError'),
]
test_evaluator = val_evaluator

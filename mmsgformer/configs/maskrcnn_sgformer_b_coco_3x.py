# Mask R-CNN 3x + multi-scale training, SG-Former-B: the 1x size config with the shared
# 3x piece (_base_/maskrcnn_coco_ms_3x.py) plugged in.
_base_ = ['./maskrcnn_sgformer_b_coco.py', './_base_/maskrcnn_coco_ms_3x.py']

train_dataloader = dict(dataset=dict(pipeline={{_base_.ms3x_train_pipeline}}))
train_cfg = dict(max_epochs={{_base_.ms3x_max_epochs}})
param_scheduler = {{_base_.ms3x_param_scheduler}}

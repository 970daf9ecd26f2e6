# UperNet + SG-Former-S on ADE20K, 512x512, 160k iterations, 8 GPUs x 2 images.
# Paper: 49.9 mIoU single-scale, 51.5 multi-scale + flip (tools/test.py --tta).
# The shared base is the S model; this file only names it.
_base_ = ['./_base_/upernet_sgformer_ade20k.py']

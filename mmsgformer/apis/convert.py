"""Official SG-Former releases to checkpoints of our configs (moved to
:mod:`mmsgformer.models.official_keys`)."""
from mmsgformer.models.official_keys import convert_official_checkpoint, describe_arch

__all__ = ['convert_official_checkpoint', 'describe_arch']

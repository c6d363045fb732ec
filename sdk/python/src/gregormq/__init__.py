from .batch import murmur2, partition_for_key

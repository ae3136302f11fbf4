"""One partition per audience segment, keyed by the segment's safe slug."""

import dagster as dg

segment_partitions = dg.DynamicPartitionsDefinition(name="segments")

"""Batch work on catalogues of any size, in partitions, on a Dask cluster or in this process.

* :func:`run_predict_job` (``prodcat predict --data … --out FOLDER``): one Parquet part per
  partition, resumable, one bad row never sinks a partition;
* :func:`run_embed_job` (``prodcat embed``): photos encoded on the cluster, stored in the shared
  embedding cache that training reads.

Dask is optional (the ``batch`` extra); importing this package does not import it.
"""

from prodcat.batch.embedding import EmbedSummary, encode_blobs, run_embed_job
from prodcat.batch.engine import EXTRA_HINT, Engine, InProcessEngine, dask_available, run_bounded
from prodcat.batch.job import JOB_FILE, JobSummary, OutputFolder, part_name
from prodcat.batch.partitions import CatalogSource, Partition, open_source
from prodcat.batch.prediction import (
    DEFAULT_PARTITION_ROWS,
    predict_partition,
    result_columns,
    run_predict_job,
)
from prodcat.batch.resources import BundleResource, EncoderResource, Resource
from prodcat.batch.runner import open_engine, run_partitions

__all__ = [
    "DEFAULT_PARTITION_ROWS", "EXTRA_HINT", "JOB_FILE", "BundleResource", "CatalogSource",
    "EmbedSummary", "EncoderResource", "Engine", "InProcessEngine", "JobSummary", "OutputFolder",
    "Partition", "Resource", "dask_available", "encode_blobs", "open_engine", "open_source", "part_name",
    "predict_partition", "result_columns", "run_bounded", "run_embed_job", "run_partitions",
    "run_predict_job",
]

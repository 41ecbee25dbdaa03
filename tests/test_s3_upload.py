"""The S3 transport's arithmetic; its requests are checked against a real server in test_archiver and test_faults."""

import pytest

from kingfisher_archive import crawl
from kingfisher_archive.s3.upload import MAX_PARTS, choose_part_size


@pytest.mark.parametrize(
    ("size", "files", "part_size"),
    [
        (0, 0, 8 * crawl.MiB),
        (100 * crawl.MiB, 10_000, 8 * crawl.MiB),
        (848 * 1024 * crawl.MiB, 1_000_000, 98 * crawl.MiB),  # the biggest crawl seen: 848 GB
    ],
)
def test_the_part_size_fits_the_crawl_in_10000_parts(size, files, part_size):
    chosen = choose_part_size(size, files)
    assert chosen == part_size
    assert chosen * MAX_PARTS >= size * 1.01 + files * 1536

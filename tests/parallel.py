"""What keeps the suite's parallel workers apart (`make test` runs pytest-xdist): a Redis
database of each worker's own. Ports, temporary directories, PostgreSQL databases, Redis
servers and host networks are already each test's or each run's own."""

import os
from urllib.parse import urlsplit, urlunsplit

REDIS_DATABASES = 16  # a stock redis-server's `databases`


def worker_number() -> int:
    """This process's worker number (gw0 is 0); 0 when the suite runs in one process."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


def redis_url_of_worker(url: str, worker: int) -> str:
    """`url` with its database moved on by `worker`: TEST_REDIS_URL's database is gw0's, the
    next one gw1's, and so on; a clear error past the server's last database."""
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0) + worker
    if database >= REDIS_DATABASES:
        raise ValueError(
            f"worker gw{worker} would use Redis database {database} of {url}: give "
            f"TEST_REDIS_URL a lower database number, or run fewer workers"
        )
    return urlunsplit(parts._replace(path=f"/{database}"))

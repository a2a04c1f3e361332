"""The parallel workers' Redis databases (tests/parallel.py): one each, the URL otherwise
untouched."""

import pytest

from tests.parallel import redis_url_of_worker


@pytest.mark.parametrize(
    ("url", "worker", "expected"),
    [
        ("redis://127.0.0.1:6379/0", 0, "redis://127.0.0.1:6379/0"),
        ("redis://127.0.0.1:6379/7", 1, "redis://127.0.0.1:6379/8"),
        ("redis://127.0.0.1:6379", 2, "redis://127.0.0.1:6379/2"),
        ("redis://127.0.0.1:6379/", 3, "redis://127.0.0.1:6379/3"),
        ("rediss://u:p@r:6380/4?ssl_cert_reqs=none", 1, "rediss://u:p@r:6380/5?ssl_cert_reqs=none"),
    ],
    ids=["one-process", "next-database", "no-database", "empty-database", "credentials-query"],
)
def test_each_worker_gets_the_database_after_the_previous_workers(url, worker, expected):
    assert redis_url_of_worker(url, worker) == expected


def test_a_worker_past_the_servers_last_database_is_refused_by_name():
    with pytest.raises(ValueError, match="worker gw3 would use Redis database 16"):
        redis_url_of_worker("redis://127.0.0.1:6379/13", 3)

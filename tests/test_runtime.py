"""Thread settings that hold for a block and are restored after it."""

from threadpoolctl import threadpool_info

from sentflow.runtime import blas_threads


def blas_pools() -> list[int]:
    """Threads of each BLAS pool loaded, from a fresh listing (not the controller blas_threads keeps)."""
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_blas_threads_limits_numpy_blas_in_the_block_and_restores_it_after():
    before = blas_pools()
    for _ in range(2):  # the second time through the controller kept from the first
        with blas_threads(1):
            assert blas_pools() and set(blas_pools()) == {1}
        assert blas_pools() == before

"""sentflow.distributed: Dask fits equal the in-memory fit, on threads and on a real LocalCluster of processes."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from sentflow import Encoder, Whitening
from sentflow.errors import SentflowError

da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
sd = pytest.importorskip("sentflow.distributed")

TOL = 1e-9


def anisotropic(n: int = 3000, d: int = 12, seed: int = 0) -> np.ndarray:
    """Rows with a large common mean and a spread-out spectrum, like sentence embeddings."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * np.logspace(0, -1.5, d) @ np.linalg.qr(rng.standard_normal((d, d)))[0] + 40.0


def assert_same_whitening(actual: Whitening, expected: Whitening) -> None:
    assert actual.n_samples_seen_ == expected.n_samples_seen_
    for attr in ("mean_", "eigenvalues_", "components_"):
        a, e = getattr(actual, attr), getattr(expected, attr)
        assert a.shape == e.shape
        assert np.abs(a - e).max() <= TOL * max(1.0, np.abs(e).max()), attr


def save_shards(directory: Path, X: np.ndarray, n: int, dtype=np.float32) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"part-{i:03d}.npy" for i in range(n)]
    for path, part in zip(paths, np.array_split(X, n), strict=True):
        np.save(path, part.astype(dtype))
    return paths


# -- on this process's threads ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "params"),
    [((700, 12), {}), ((13, 5), {"n_components": 4}), ((2999, 12), {"power": 0.25}), ((333, 7), {"n_components": 12})],
)
def test_fit_whitening_equals_in_memory_fit(chunks, params):
    X = anisotropic()
    fitted = sd.fit_whitening(da.from_array(X, chunks=chunks), **params)
    assert isinstance(fitted, Whitening)
    assert_same_whitening(fitted, Whitening(**params).fit(X))


def test_fit_whitening_checks_params_and_values_naming_them():
    X = anisotropic(n=50)
    with pytest.raises(SentflowError, match="n_components=13"):
        sd.fit_whitening(da.from_array(X, chunks=10), n_components=13)
    X[37, 2] = np.nan
    with pytest.raises(SentflowError, match="NaN"):
        sd.fit_whitening(da.from_array(X, chunks=10))


def test_transform_maps_every_chunk_like_the_calibration():
    X = anisotropic().astype(np.float32)
    whitening = Whitening(n_components=5).fit(X)
    Z = sd.transform(whitening, da.from_array(X, chunks=(500, 6)))
    assert Z.shape == (3000, 5) and Z.dtype == np.float32 and Z.chunks[0] == (500,) * 6
    np.testing.assert_allclose(Z.compute(), whitening.transform(X), rtol=0, atol=1e-5)
    with pytest.raises(SentflowError, match="11 features"):
        sd.transform(whitening, da.from_array(X[:, :11]))


def test_from_npy_is_lazy_and_exact(tmp_path):
    X = anisotropic(n=2000)
    save_shards(tmp_path / "shards", X, 3, np.float64)
    Y = sd.from_npy(tmp_path / "shards", chunk_rows=256)
    assert Y.shape == X.shape and Y.dtype == np.float64 and max(Y.chunks[0]) == 256
    graph_bytes = len(pickle.dumps(dict(Y.__dask_graph__())))
    assert graph_bytes < X.nbytes / 20  # the graph names files and row ranges, it holds no data
    np.testing.assert_array_equal(Y.compute(), X)
    assert_same_whitening(sd.fit_shards(str(tmp_path / "shards" / "*.npy"), chunk_rows=300), Whitening().fit(X))


def test_from_npy_widens_to_the_common_float_type(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.int16).reshape(3, 2))
    np.save(tmp_path / "b.npy", np.ones((2, 2), dtype=np.float32))
    Y = sd.from_npy([tmp_path / "a.npy", tmp_path / "b.npy"])
    assert Y.dtype == np.float64
    np.testing.assert_array_equal(Y.compute(), [[0, 1], [2, 3], [4, 5], [1, 1], [1, 1]])


def bad_shard_dirs(root: Path) -> dict[str, tuple[Path | str, str]]:
    """Each kind of bad input: (what to open, the file the error must name)."""
    X = anisotropic(n=40, d=4)
    cases = {}
    widths = save_shards(root / "widths", X, 2)
    np.save(widths[1], np.ones((3, 5), np.float32))
    cases["different widths"] = (root / "widths", widths[1].name)
    missing = save_shards(root / "missing", X, 2)
    cases["missing"] = ([missing[0], root / "missing" / "part-009.npy"], "part-009.npy")
    truncated = save_shards(root / "truncated", X, 2)
    truncated[1].write_bytes(truncated[1].read_bytes()[:-37])
    cases["truncated"] = (root / "truncated", truncated[1].name)
    save_shards(root / "stray", X, 2)
    (root / "stray" / "notes.txt").write_text("not an array")
    cases["non-.npy file"] = (root / "stray", "notes.txt")
    np.save(root / "vector.npy", np.ones(4))
    cases["1-D"] = (root / "vector.npy", "vector.npy")
    np.save(root / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases["pickled objects"] = ([widths[0], root / "objects.npy"], "objects.npy")
    cases["no match"] = (str(root / "nowhere" / "*.npy"), "nowhere")
    return cases


def test_bad_shards_raise_one_line_naming_the_file(tmp_path):
    for case, (paths, name) in bad_shard_dirs(tmp_path).items():
        with pytest.raises(SentflowError) as info:
            sd.from_npy(paths)
        message = str(info.value)
        assert name in message and "\n" not in message, (case, message)


def test_unreachable_scheduler_is_one_quick_line():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(SentflowError, match=f"127.0.0.1:{port}") as info:
        sd.connect(f"tcp://127.0.0.1:{port}", timeout=1.0)
    assert "\n" not in str(info.value) and time.perf_counter() - start < 10
    with pytest.raises(SentflowError, match="nonsense::"):
        sd.connect("nonsense::")


# -- on a LocalCluster of two worker processes ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", worker_dashboard_address=":0"
    ) as local:
        yield local


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster) as connected:
        connected.wait_for_workers(2, timeout=60)
        yield connected


def test_cluster_fit_equals_in_memory_fit_and_runs_on_both_workers(client, tmp_path):
    X = anisotropic(n=6000, d=16, seed=3)
    paths = save_shards(tmp_path, X, 5, np.float64)
    Y = sd.from_npy(paths, chunk_rows=500)
    with distributed.get_task_stream(client) as stream:
        fitted = sd.fit_whitening(Y, n_components=10)
    assert_same_whitening(fitted, Whitening(n_components=10).fit(X))
    assert len({task["worker"] for task in stream.data}) == 2
    Z = sd.transform(fitted, Y).compute()
    np.testing.assert_allclose(Z, fitted.transform(X), rtol=0, atol=1e-9)


def test_fit_shards_on_a_scheduler_address_with_progress(cluster, tmp_path, capsys):
    X = anisotropic(n=1500, d=8, seed=4)
    save_shards(tmp_path, X, 3, np.float64)  # 500 rows each: 3 chunks of at most 200 rows per shard
    fitted = sd.fit_shards(tmp_path, cluster.scheduler_address, power=0.25, chunk_rows=200, progress=True)
    assert_same_whitening(fitted, Whitening(power=0.25).fit(X))
    err = capsys.readouterr().err
    assert "moments" in err and "9/9" in err


def test_encode_on_workers_equals_in_process_encode(client, tiny_bert_dir):
    rng = np.random.default_rng(5)
    words = "a the man woman dog cat is playing eating guitar ball on the beach with her".split()
    texts = [" ".join(rng.choice(words, size=rng.integers(2, 12))) for _ in range(40)]
    encoder = Encoder(str(tiny_bert_dir), cache=False, device="cpu", batch_size=8)
    vectors = sd.encode(db.from_sequence(texts, npartitions=5), encoder)
    assert vectors.shape[1] == 32 and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors.compute(), encoder.encode(texts), rtol=0, atol=1e-5)
    kept = client.run(lambda: len(sd._WORKER_ENCODERS))
    assert set(kept.values()) <= {0, 1} and sum(kept.values()) >= 1  # one copy per worker that encoded
    encoder.encode(texts[:1])  # now loaded here: its weights must not be shipped
    with pytest.raises(SentflowError, match="has not loaded its model"):
        sd.encode(db.from_sequence(texts), encoder)


def gated_block(claim: str, rows: np.ndarray) -> np.ndarray:
    """The first attempt publishes its worker's pid and hangs until killed; a retry returns the rows at once."""
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return rows
    Path(f"{claim}.tmp").write_text(str(os.getpid()))
    os.replace(f"{claim}.tmp", f"{claim}.pid")
    time.sleep(120)
    raise RuntimeError("the test should have killed this worker")


def test_worker_killed_mid_reduction_is_retried_with_the_same_result(client, tmp_path):
    X = anisotropic(n=4000, d=10, seed=6)
    parts = np.array_split(X, 8)
    claim = str(tmp_path / "claim")
    gated = dask.delayed(gated_block, pure=True)(claim, parts[5])
    blocks = [da.from_array(part, chunks=-1) for part in parts]
    blocks[5] = da.from_delayed(gated, shape=parts[5].shape, dtype=X.dtype)
    with ThreadPoolExecutor(1) as pool:
        fit = pool.submit(sd.fit_whitening, da.concatenate(blocks))
        pid_file = Path(f"{claim}.pid")
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int(pid_file.read_text())
        assert pid in client.run(os.getpid).values()  # a worker process, not this one
        os.kill(pid, signal.SIGKILL)
        fitted = fit.result(timeout=120)
    assert pid not in client.run(os.getpid).values()
    assert_same_whitening(fitted, Whitening().fit(X))

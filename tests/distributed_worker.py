"""The programs tests/test_distributed.py runs under `mpirun -n 2`, one scenario per
launch, and (for the training scenarios) also in the test process as the one-process
reference on the global batch.

    python tests/distributed_worker.py SCENARIO OUT_DIR

train  - an MLP (gradient accumulation under no_sync) and a small MNIST-shaped CNN
         (SyncBatchNorm), 20 steps each, then Keras fit (2 epochs, uneven last batch,
         ModelCheckpoint); each rank writes its final weights to OUT_DIR
kill   - rank 1 kills itself (SIGKILL) at step 3 of a training loop
raise  - rank 1 raises at step 3
hang   - rank 1 skips a collective; the group's timeout is 2 s
Failing ranks write the time of the failure to OUT_DIR/failed_at.
"""
import contextlib
import os
import signal
import sys
import time

import numpy as np

import pydl
import pydl.distributed as dist
from pydl import nn
from pydl.data import DataLoader, DistributedSampler, TensorDataset

GLOBAL_BATCH = 16
EPOCHS = 2
SAMPLES = 160  # 10 global batches per epoch: 20 steps


def mlp_case():
    pydl.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 5))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((SAMPLES, 20)).astype(np.float32)
    y = rng.integers(0, 5, SAMPLES)
    return model, x, y, lambda params: pydl.optim.SGD(params, lr=0.05, momentum=0.9)


def cnn_case():
    """The Keras MNIST tutorial's shape (conv-pool-conv-pool-dense) at 28x28, with fewer
    channels, and batch normalization after the first convolution (which has no bias:
    the normalization removes it, leaving it a gradient of pure rounding noise that
    Adam would scale up to full steps)."""
    pydl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(16 * 5 * 5, 10))
    rng = np.random.default_rng(2)
    x = rng.random((SAMPLES, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, SAMPLES)
    return model, x, y, lambda params: pydl.optim.Adam(params, lr=1e-3)


CASES = {"mlp": mlp_case, "cnn": cnn_case}


def train(case, world=1, rank=0):
    """Trains CASES[case] on this rank's shard of each global batch; world=1 is the
    one-process run on the whole batch. Returns the final state_dict as arrays."""
    model, x, y, make_optimizer = CASES[case]()
    if world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = make_optimizer(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    data = TensorDataset(x, y)
    sampler = DistributedSampler(data, world, rank, shuffle=True, seed=0)
    loader = DataLoader(data, batch_size=GLOBAL_BATCH // world, sampler=sampler)
    accumulate = case == "mlp"  # two micro-batches per step, the first under no_sync
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            optimizer.zero_grad()
            if accumulate:
                half = len(xb) // 2
                local = model.no_sync() if world > 1 else contextlib.nullcontext()
                with local:
                    (loss_fn(model(xb[:half]), yb[:half]) * 0.5).backward()
                (loss_fn(model(xb[half:]), yb[half:]) * 0.5).backward()
            else:
                loss_fn(model(xb), yb).backward()
            optimizer.step()
    module = model.module if world > 1 else model
    return {k: v.numpy().copy() for k, v in module.state_dict().items()}


def keras_fit(out_dir, rank=0):
    """Keras fit as a tutorial writes it; under a process group it runs data-parallel.
    43 samples in batches of 16: the last batch (11) splits 5 / 6."""
    from pydl import keras
    from pydl.keras import layers
    pydl.manual_seed(0)
    model = keras.Sequential([layers.Conv2D(4, (3, 3), activation="relu", input_shape=(12, 12, 1)),
                              layers.MaxPooling2D((2, 2)), layers.Flatten(),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(3)
    x = rng.random((43, 12, 12, 1), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 10, 43), 10)
    checkpoint = keras.callbacks.ModelCheckpoint(
        os.path.join(out_dir, f"keras_rank{rank}_epoch{{epoch}}.weights"), monitor="loss",
        save_weights_only=True)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=2, callbacks=[checkpoint])
    weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    return weights, history.history


def record_failure_time(out_dir):
    with open(os.path.join(out_dir, "failed_at"), "w") as file:
        file.write(repr(time.time()))


def step_loop(fail, out_dir):
    """A training loop in which rank 1 fails at step 3 (records the time, then runs
    fail())."""
    model, x, y, make_optimizer = mlp_case()
    model = nn.parallel.DistributedDataParallel(model)
    optimizer = make_optimizer(model.parameters())
    for step in range(1000):
        if step == 3 and dist.get_rank() == 1:
            record_failure_time(out_dir)
            fail()
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(pydl.tensor(x[:8])), pydl.tensor(y[:8])).backward()
        optimizer.step()
    print("rank", dist.get_rank(), "finished without noticing the failure", flush=True)


def main(scenario, out_dir):
    pydl.set_num_threads(1)  # two ranks share two cores
    if scenario == "hang":
        dist.init_process_group("mpi", timeout=2.0)
        if dist.get_rank() == 1:
            record_failure_time(out_dir)
            time.sleep(30)
        dist.barrier()
        return
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    if scenario == "train":
        for case in CASES:
            np.savez(os.path.join(out_dir, f"{case}_rank{rank}.npz"), **train(case, world, rank))
        weights, history = keras_fit(out_dir, rank)
        np.savez(os.path.join(out_dir, f"keras_rank{rank}.npz"), **weights,
                 **{f"history_{k}": v for k, v in history.items()})
    elif scenario == "kill":
        step_loop(lambda: os.kill(os.getpid(), signal.SIGKILL), out_dir)
    elif scenario == "raise":
        def fail():
            raise ValueError("a bug on rank 1")
        step_loop(fail, out_dir)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])

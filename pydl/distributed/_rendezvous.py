"""Handing rank 0's NCCL unique id to every rank: over MPI when the job is an MPI job,
else over TCP at $MASTER_ADDR:$MASTER_PORT (torchrun's variables): rank 0 listens and
sends the id to each rank that connects."""
import os
import socket
import time


def share_over_tcp(payload, rank, world_size, timeout, environ=None):
    """Rank 0 sends `payload` (bytes) to every other rank, which returns it."""
    environ = os.environ if environ is None else environ
    address, port = environ.get("MASTER_ADDR"), environ.get("MASTER_PORT")
    if not address or not port:
        raise RuntimeError("pydl.distributed: the nccl backend outside an MPI job needs "
                           "$MASTER_ADDR and $MASTER_PORT (as torchrun sets them) to share "
                           "its unique id")
    port = int(port)
    deadline = time.monotonic() + timeout
    if rank == 0:
        with socket.create_server(("", port), reuse_port=False) as server:
            server.settimeout(timeout)
            for _ in range(world_size - 1):
                connection, _ = server.accept()
                with connection:
                    connection.sendall(len(payload).to_bytes(4, "big") + payload)
        return payload
    while True:
        try:
            with socket.create_connection((address, port), timeout=timeout) as connection:
                size = int.from_bytes(_receive(connection, 4), "big")
                return _receive(connection, size)
        except (ConnectionRefusedError, socket.timeout, OSError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"pydl.distributed: rank {rank} could not reach rank 0 at "
                                   f"{address}:{port} within {timeout:g} s") from None
            time.sleep(0.1)


def _receive(connection, size):
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("pydl.distributed: rank 0 closed the connection early")
        data += chunk
    return data

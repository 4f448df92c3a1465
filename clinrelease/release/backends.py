"""Where the items run: in this process, a local process pool, or a Dask cluster; and which items a
shard (``run --shard i/N``) takes. Each item is :func:`~clinrelease.release.item.process_item`, a
pure function of the item and a picklable context, so every backend gives the same records."""

from __future__ import annotations

from collections.abc import Callable

from clinrelease.errors import ConfigError
from clinrelease.items import InputItem
from clinrelease.release.item import process_item
from clinrelease.release.record import ItemRecord
from clinrelease.release.work import ItemContext


def shard_items(items: list[InputItem], shard: tuple[int, int] | None) -> list[InputItem]:
    """The items shard ``(i, N)`` processes: i, i+N, ...; all of them when not sharded."""
    if shard is None:
        return items
    index, count = shard
    return [it for n, it in enumerate(items) if n % count == index]


def execute(
    items: list[InputItem],
    ctx: ItemContext,
    executor: str = "process",
    workers: int = 1,
    scheduler: str | None = None,
    on_item: Callable[[ItemRecord], None] | None = None,
) -> list[ItemRecord]:
    """Run :func:`process_item` over the items: in this process, a process pool (``workers`` > 1),
    or Dask (``executor="dask"``, at ``scheduler`` or on a local cluster); records in input order."""
    records: list[ItemRecord] = []

    def done(record: ItemRecord) -> None:
        records.append(record)
        if on_item:
            on_item(record)

    if executor == "dask":
        try:
            from distributed import Client, LocalCluster, as_completed
        except ImportError as exc:
            raise ConfigError("--executor dask needs the dask extra: pip install -e '.[dask]'") from exc
        if scheduler:
            client = Client(scheduler)
            cluster = None
        else:
            cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True)
            client = Client(cluster)
        try:
            futures = client.map(process_item, items, ctx=ctx, pure=False)
            for future in as_completed(futures):
                done(future.result())
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    elif workers > 1 and len(items) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures import as_completed as futures_completed

        # spawn: model runtimes (mediapipe, onnxruntime, torch) do not survive fork reliably
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(process_item, item, ctx) for item in items]
            for future in futures_completed(futures):
                done(future.result())
    else:
        for item in items:
            done(process_item(item, ctx))
    order = {it.item_id: n for n, it in enumerate(items)}
    records.sort(key=lambda r: order.get(r.item_id, 0))
    return records

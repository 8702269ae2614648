"""Progress bars for long loops, as a callback so a loop need not know whether one is shown."""

from __future__ import annotations

from collections.abc import Callable


def progress_callback(total: int, enabled: bool, desc: str, unit: str) -> Callable[[int | None], None]:
    """``update(n)`` advances a tqdm bar by ``n``; ``update(None)`` closes it. A no-op when not
    ``enabled`` or there is nothing to do."""
    if not enabled or total == 0:
        return lambda step: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit)

    def update(step: int | None) -> None:
        if step is None:
            bar.close()
        else:
            bar.update(step)

    return update

"""Saving `.keras` files so that a failed save never destroys the file already there."""

import os
import tempfile


def save(model, path, overwrite=True):
    """Saves `model` as a `.keras` file; a failed save leaves `path` as it was.

    Keras' `model.save(path)` opens `path` for writing before it serializes
    anything, so a save that fails (a layer whose `get_config` raises, a full
    disk) truncates an existing file. This writes a temporary file in the same
    directory and renames it over `path` (atomic on one file system) only once
    the save succeeded; on failure the temporary file is removed.

    Args:
        model: A Keras model (converted or not).
        path: Destination file, ending in `.keras`.
        overwrite: Replace an existing file. Defaults to `True` (as Keras).

    Raises:
        ValueError: if `path` does not end in `.keras`.
        FileExistsError: if `path` exists and `overwrite=False`.
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(
            f"save(): the path must end in '.keras' (the Keras 3 format). Received: path={path!r}"
        )
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"save(): '{path}' exists and overwrite=False. Pass overwrite=True to replace it."
        )
    fd, tmp = tempfile.mkstemp(
        suffix=".keras", prefix=".saving-", dir=os.path.dirname(os.path.abspath(path))
    )
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise

"""`python -m scoresde.data.prepare --source=SRC --dest=DST [--resolution=N] [--grayscale] [--labels=auto|none]`

Decodes an image folder, an EDM-style zip of images, a .npy or a .npz file of uint8 images once into a prepared dataset
(`scoresde.data.prepared`: one memory-mappable uint8 file, the labels and a manifest with
SHA-256s), streaming, with a progress bar. Run the same command again after an interruption to
resume. Exit status: 0 done, 1 an error (one line naming the file or option). `--clean-cache` removes the
cached copies (config.data.cache) whose source changed or is gone.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from tqdm.auto import tqdm

from scoresde.data import prepared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scoresde.data.prepare", description=__doc__.split("\n\n")[1])
    parser.add_argument("--clean-cache", action="store_true", help="remove the cached copies whose source changed or is gone")
    parser.add_argument("--cache-dir", default=None, help="--clean-cache's folder (default: the data.cache_dir default)")
    parser.add_argument("--source", required=False, help="an image folder, a .zip of images, a .npy or .npz of uint8")
    parser.add_argument("--dest", required=False, help="the prepared dataset's folder (created)")
    parser.add_argument("--resolution", type=int, default=None, help="an image folder's or zip's square size (required for them)")
    parser.add_argument("--grayscale", action="store_true", help="an image folder's images as one grey channel")
    parser.add_argument("--labels", choices=prepared.LABEL_MODES, default="auto")
    parser.add_argument("--on-error", choices=prepared.ON_ERROR, default="skip", help="an image that cannot be decoded")
    args = parser.parse_args(argv)
    if args.clean_cache:
        stale = prepared.stale_copies(args.cache_dir)
        for copy in stale:
            shutil.rmtree(copy)
        print(f"removed {len(stale)} stale copies" + "".join(f"\n  {copy}" for copy in stale))
        return 0
    if not (args.source and args.dest):
        parser.error("--source and --dest are required (or --clean-cache)")
    bar = tqdm(desc="preparing", unit="image", disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        manifest = prepared.prepare(
            args.source,
            args.dest,
            resolution=args.resolution,
            grayscale=args.grayscale,
            labels=args.labels,
            on_error=args.on_error,
            callback=progress,
        )
    except (OSError, ValueError, MemoryError) as err:
        bar.close()
        print(f"error: {err}", file=sys.stderr)
        return 1
    bar.close()
    skipped = manifest["skipped"]
    note = (
        f"; {len(skipped)} skipped (named in manifest.json), e.g. {skipped[0]['name']}: {skipped[0]['error']}" if skipped else ""
    )
    print(f"done: {manifest['count']} images of shape {tuple(manifest['shape'])} in {args.dest}{note}")
    return 0


def run() -> None:
    """The console entry point `scoresde-prepare`."""
    sys.exit(main())


if __name__ == "__main__":
    run()

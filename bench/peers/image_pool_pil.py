#!/usr/bin/python3
"""Peer for bench/image_pool: the seed's way in Python, multiprocessing.Pool
mapping a PIL function over image paths (one task per image, chunksize=1,
as actorbus process_pool sends them). Same inputs as ours: the images are
made by our own `image_pool --generate` with the same count, size and seed;
same operations; same worker count (one per core); both write their outputs.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool

from PIL import Image, ImageFilter

# Keep in sync with bench/image_pool/image_pool_bench.cpp.
COUNT = 32
WIDTH, HEIGHT = 800, 600
SEED = 7
ROUNDS = 3
GROUPS = {
    # group: (operations, output format)
    "image_pool_thumbnail_png": ([("thumbnail", 256), ("sharpen",)], "png"),
    "image_pool_filters_jpg": ([("grayscale",), ("blur", 2)], "jpg"),
}


def apply(img, ops):
    for op in ops:
        if op[0] == "thumbnail":
            # The same size rule as ours; resize, not Image.thumbnail, so
            # both run the same bicubic filter on the full image.
            n = op[1]
            if img.width > n or img.height > n:
                scale = n / max(img.width, img.height)
                size = (min(n, max(1, round(img.width * scale))),
                        min(n, max(1, round(img.height * scale))))
                img = img.resize(size, Image.BICUBIC)
        elif op[0] == "sharpen":
            img = img.filter(ImageFilter.SHARPEN)
        elif op[0] == "grayscale":
            img = img.convert("L")
        elif op[0] == "blur":
            img = img.filter(ImageFilter.GaussianBlur(op[1]))
    return img


def process(job):
    src, dst, ops, fmt = job
    try:
        with Image.open(src) as im:
            out = apply(im, ops)
            if fmt == "jpg":
                out.save(dst, "JPEG", quality=90)
            else:
                out.save(dst, "PNG")
        return True
    except Exception:  # a broken file must not stop the batch
        return False


def main():
    build = os.environ.get("ACTORBUS_BUILD",
                           os.path.join(os.path.dirname(__file__), "..", "..",
                                        "build"))
    exe = os.path.join(build, "bin", "image_pool")
    if not os.path.exists(exe):
        sys.stderr.write(f"image_pool_pil: {exe} is not built\n")
        return 1
    work = tempfile.mkdtemp(prefix="image-pool-pil-")
    try:
        inputs = os.path.join(work, "input")
        subprocess.run([exe, "--generate", str(COUNT), "--size",
                        f"{WIDTH}x{HEIGHT}", "--seed", str(SEED), inputs],
                       check=True, stdout=subprocess.DEVNULL)
        files = sorted(os.path.join(inputs, f) for f in os.listdir(inputs))
        records = []
        workers = os.cpu_count()
        with Pool(processes=workers) as pool:
            for group, (ops, fmt) in GROUPS.items():
                out = os.path.join(work, group)
                os.makedirs(out)
                jobs = [(f, os.path.join(out, os.path.splitext(
                    os.path.basename(f))[0] + "." + fmt), ops, fmt)
                    for f in files]
                # One warm-up round, then the mean of ROUNDS, as ours.
                assert all(pool.map(process, jobs, chunksize=1))
                start = time.perf_counter()
                for _ in range(ROUNDS):
                    assert all(pool.map(process, jobs, chunksize=1))
                elapsed = time.perf_counter() - start
                images = ROUNDS * len(jobs)
                records.append({
                    "group": group, "impl": "python_pil_pool",
                    "metrics": {
                        "items_per_second": images / elapsed,
                        "megapixels_per_second":
                            images * WIDTH * HEIGHT / elapsed / 1e6}})
        print(json.dumps({"records": records}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

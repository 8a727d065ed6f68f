"""Fuzz facekit's untrusted-input entry points for a while: image decoding and pipeline YAML.

The properties are the ones in tests/test_properties.py (imported from there, so the two
never drift): ``load_image(bytes)`` returns an ``(H, W, 3)`` uint8 image or raises
ImageError; ``Pipeline.from_yaml(text)`` returns a pipeline or raises ConfigError.

Two engines:

* ``atheris`` (coverage-guided, libFuzzer; ``pip install atheris``): starts from the real
  photo written in every accepted format and mutates it, guided by the coverage of
  facekit's and Pillow's Python code (Pillow's C decoders are run, not instrumented).
* ``hypothesis`` (always available): the tests' strategies with as many examples as fit.

    python benchmarks/fuzz_decode.py --engine atheris --target image --seconds 240
    python benchmarks/fuzz_decode.py --engine hypothesis --target yaml --seconds 60

Exit status 1 and the failing input saved under --artifacts if the property breaks.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]


def _tests_module() -> Any:
    sys.path.insert(0, str(REPO_ROOT))
    spec = importlib.util.spec_from_file_location("facekit_test_properties", REPO_ROOT / "tests" / "test_properties.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _faces_root() -> Path:
    from conftest import _faces_root as root  # the one place that knows where the photos are

    return root()


def _target(props: Any, target: str) -> Callable[[bytes], None]:
    if target == "image":
        return props.check_decode

    def yaml_text(data: bytes) -> None:
        props.check_config(data.decode("utf-8", "replace"))

    return yaml_text


def run_atheris(props: Any, target: str, seconds: int, artifacts: Path) -> int:
    import atheris

    with atheris.instrument_imports(include=["PIL", "facekit", "yaml"]):
        from PIL import Image

        Image.init()  # every Pillow plugin, instrumented
        props = _tests_module()
    check = _target(props, target)
    corpus = Path(tempfile.mkdtemp(prefix=f"facekit-fuzz-{target}-"))
    seeds = props.seed_images(str(_faces_root())) if target == "image" else [
        (REPO_ROOT / "src" / "facekit" / "pipelines" / "default.yaml").read_bytes(),
        b"name: x\ndetector: {name: dlib.hog, params: {upsample: 1}}\naligner: dlib.chip5\nembedder: torch.dlib_resnet\n",
    ]
    for i, seed in enumerate(seeds):
        (corpus / f"seed{i:02d}").write_bytes(seed)
    artifacts.mkdir(parents=True, exist_ok=True)

    def one_input(data: bytes) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check(data)

    args = [sys.argv[0], str(corpus), f"-max_total_time={seconds}", f"-artifact_prefix={artifacts}/",
            "-rss_limit_mb=4096", "-timeout=20", "-print_final_stats=1"]
    if target == "image":
        args.append("-max_len=65536")
    atheris.Setup(args, one_input)
    atheris.Fuzz()  # exits the process: libFuzzer prints the statistics
    return 0


def run_hypothesis(props: Any, target: str, seconds: int, artifacts: Path) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    if target == "image":
        seeds = props.seed_images(str(_faces_root()))
        strategies = [("damaged real images", props.damaged(seeds), props.check_decode),
                      ("random bytes", st.binary(max_size=4096), props.check_decode)]
    else:
        strategies = [("structured YAML", st.dictionaries(st.sampled_from(props.KEYS), props.VALUES, min_size=1,
                                                          max_size=7).map(lambda d: __import__("yaml").safe_dump(d)),
                       props.check_config),
                      ("arbitrary text", st.text(max_size=400), props.check_config)]
    deadline = time.monotonic() + seconds
    counts = {name: 0 for name, _, _ in strategies}
    while time.monotonic() < deadline:
        for name, strategy, check in strategies:
            counted = _counting(check, name, counts)
            prop = settings(max_examples=500, deadline=None, database=None, derandomize=False,
                            suppress_health_check=list(HealthCheck))(given(strategy)(counted))
            try:
                prop()
            except Exception:
                print(f"property broken on {name}", file=sys.stderr)
                raise
    total = sum(counts.values())
    print(f"hypothesis, {target}: {total:,} examples in {seconds} s, no property broken")
    for name, count in counts.items():
        print(f"  {name}: {count:,}")
    return 0


def _counting(check: Callable[[Any], None], name: str, counts: dict[str, int]) -> Callable[[Any], None]:
    def counted(value: Any) -> None:
        counts[name] += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check(value)

    return counted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["atheris", "hypothesis"], default="atheris")
    parser.add_argument("--target", choices=["image", "yaml"], default="image")
    parser.add_argument("--seconds", type=int, default=180)
    parser.add_argument("--artifacts", type=Path, default=Path("fuzz-artifacts"))
    args = parser.parse_args(argv)
    if args.engine == "atheris":
        try:
            import atheris  # noqa: F401
        except ImportError:
            print("atheris is not installed; using hypothesis", file=sys.stderr)
            args.engine = "hypothesis"
    if args.engine == "atheris":  # imports facekit and Pillow itself, to instrument them
        return run_atheris(None, args.target, args.seconds, args.artifacts)
    return run_hypothesis(_tests_module(), args.target, args.seconds, args.artifacts)


if __name__ == "__main__":
    raise SystemExit(main())

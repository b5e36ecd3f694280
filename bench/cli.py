"""`siamese-bench`: its options are BenchConfig's and TimingConfig's fields (bench.harness, bench.timing)."""

from __future__ import annotations

import shlex
import sys

import click

from bench.harness import BenchConfig
from bench.harness import main as bench_main
from bench.timing import TimingConfig
from siamese.artifacts.folder import ExportPolicy
from siamese.cli.options import options_from, policy_options, split_options
from siamese.core.errors import user_errors


@click.command(context_settings={"show_default": True})
@options_from(BenchConfig)
@options_from(TimingConfig)
@policy_options
@user_errors
def main(trust_export, verify_key, **options):
    """Benchmark exported siamese models across runtimes: parity, latency and throughput."""
    timing = TimingConfig(**split_options(TimingConfig, options))
    policy = ExportPolicy.from_options(trust_export, verify_key)
    command = shlex.join(["siamese-bench", *sys.argv[1:]])
    bench_main(
        BenchConfig(timing=timing, policy=policy, command=command, **options),
        echo=click.echo,
        log=lambda m: click.echo(m, err=True),
    )


if __name__ == "__main__":
    main()

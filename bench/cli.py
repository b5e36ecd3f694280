"""`siamese-bench`: thin click layer over the harness."""

import click


@click.command()
@click.option("--batch", default="64", show_default=True, help="comma-separated batch sizes, e.g. 1,8,64")
def main(batch):
    """Benchmark exported siamese models across runtimes for parity, latency and throughput."""
    raise click.ClickException("siamese-bench is not implemented yet")

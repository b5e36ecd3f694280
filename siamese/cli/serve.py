"""`siamese-serve`: an export behind Triton Inference Server (PyTriton)."""

from __future__ import annotations

from pathlib import Path

import click

from siamese.artifacts.folder import ExportPolicy
from siamese.backends import RUNTIMES
from siamese.cli.options import export_dir_option, policy_options
from siamese.core.errors import user_errors
from siamese.core.params import Batch, Threads


@click.command(context_settings={"show_default": True})
@export_dir_option
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), default="ort-cpu", help="what runs each request")
@click.option("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
@click.option("--http-port", type=click.IntRange(1, 65535), default=8000)
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8001)
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=8002)
@click.option("--max-batch", type=Batch, default=64, help="largest batch Triton forms per model")
@click.option("--threads", type=Threads, default=None, help="intra-op threads of the runtime")
@click.option(
    "--triton-log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write Triton's own log to this file instead of the console",
)
@policy_options
@user_errors
def main(
    export_dir,
    runtime,
    host,
    http_port,
    grpc_port,
    metrics_port,
    max_batch,
    threads,
    triton_log,
    trust_export,
    verify_key,
):
    """Serve an export through Triton Inference Server (PyTriton): HTTP, gRPC, dynamic batching."""
    from siamese.artifacts.folder import default_export
    from siamese.backends.triton.repository import ServingConfig
    from siamese.backends.triton.server import Server, ServerAddress, stop_on_sigterm

    stop = stop_on_sigterm()  # from the start: SIGTERM never raises inside PyTriton, even while it starts
    address = ServerAddress(host, http_port, grpc_port, metrics_port)
    policy = ExportPolicy.from_options(trust_export, verify_key)
    serving = ServingConfig.up_to(max_batch)
    server = Server(export_dir or default_export(), runtime, address, serving, policy, threads, triton_log)
    server.start()
    click.echo(server.export.describe())
    click.echo(f"serving {server.export.path} with {runtime}: HTTP {address.http_url}, gRPC {address.grpc_url}")
    if triton_log:
        click.echo(f"Triton's log: {server.log_file}")
    server.serve_forever(stop)


if __name__ == "__main__":
    main()

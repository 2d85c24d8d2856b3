"""`sd35-studio generate --engine URL[,URL...]`: the same job, run by a ComfyUI server (app.remote.RemoteSession)
or spread over several (app.remote.pool.ServerPool), written by the same writer as a local one. `--model` is then
a checkpoint name as the servers list it."""

from __future__ import annotations

import argparse
import sys

from app.cli.options import request_from_args
from app.cli.output_folder import remove_stale_output_temp_files
from app.cli.status import EXIT_ERROR, closed_stdout
from app.inference.api.cancel import CancelToken
from app.inference.api.errors import FailureKind, InferenceError

_LOCAL_ONLY = ("clip_l", "clip_g", "t5", "vae")  # files on this machine: a server uses its own


def run_remote(args: argparse.Namespace) -> int:
    from app.cli.engine_auth import engine_headers
    from app.cli.generate import _CommandLineJob, _error
    from app.remote.pool import ServerPool
    from app.remote.session import RemoteSession

    remove_stale_output_temp_files(args.out.parent)
    try:
        given = [f"--{name.replace('_', '-')}" for name in _LOCAL_ONLY if getattr(args, name, None)]
        if given:
            raise ValueError(f"{', '.join(given)} name local files; with --engine the server uses its own")
        if args.save_latent:
            raise ValueError("--save-latent needs the local engine: a ComfyUI server returns only the image")
        request = request_from_args(args)
        urls = [u.strip() for u in args.engine.split(",") if u.strip()]
        if not urls:
            raise ValueError("--engine needs a server address, e.g. http://127.0.0.1:8188")
        options = {"preview": "off", "partial_text_encoders": args.engine_partial_encoders}
        # never printed; each address once (its plain-http warning too)
        headers = {url: engine_headers(url, None, args.engine_token_file) for url in dict.fromkeys(urls)}
        if len(urls) > 1:
            session = ServerPool(urls, headers.__getitem__, **options)
        else:
            session = RemoteSession(urls[0], headers[urls[0]], **options)
    except (InferenceError, ValueError) as exc:
        return _error(str(exc))
    cancel = CancelToken()
    job = _CommandLineJob(args, request.count, cancel)
    try:
        session.execute(args.model, request, cancel, job, variant=args.variant)
    except OSError as exc:  # raised by our own event handler while writing an image
        job.print_json("error", message=str(exc), kind=FailureKind.IO)
        return _error(f"cannot write output: {exc}", job.line_open)
    except KeyboardInterrupt:
        cancel.cancel()
        sys.stderr.write("\nsd35-studio: cancelled\n")
        return 130
    finally:
        session.close()
    if job.stdout_closed:
        return closed_stdout()
    if job.failed is not None:
        return _error(job.failed.message, job.line_open)
    if job.images_failed:
        return EXIT_ERROR
    return 130 if job.cancelled else 0

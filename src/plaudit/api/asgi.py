"""The API application of a scale-out process, built from the environment (uvicorn imports
it in each process it starts: ``plaudit serve --workers N``)."""

from __future__ import annotations

from fastapi import FastAPI

from plaudit.api.app import create_app
from plaudit.bootstrap import build
from plaudit.settings import Settings


def scale_out_app() -> FastAPI:
    container = build(Settings())
    stream = container.stream
    background = []
    if stream is not None:

        async def publish() -> None:
            await stream.connect()
            await stream.run_publisher()

        background.append(publish)
    return create_app(container, background=background, on_shutdown=[container.close])

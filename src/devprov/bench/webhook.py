"""A custom allocation webhook for benchmarks: picks the first linked hub, echoes a payload."""

from __future__ import annotations

import argparse

from aiohttp import web


async def allocate(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response(
        {"iotHubHostName": body["linkedHubs"][0], "payload": {"ticket": "bench"}}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    app = web.Application()
    app.router.add_post("/allocate", allocate)
    web.run_app(app, host="127.0.0.1", port=parser.parse_args().port, print=None, access_log=None)


if __name__ == "__main__":
    main()

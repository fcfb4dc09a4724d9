"""For webhook authors: check that a custom allocation request really came from devprov.

devprov (started with `--webhook-secret SECRET`, or an enrollment's
`customAllocationDefinition.webhookSecret`) signs each request with the header
`X-Devprov-Signature: t=UNIX_SECONDS,v1=HEX`, HEX = HMAC-SHA256(SECRET, "{t}.{raw body}").
Verify it on the raw bytes you received, before parsing them::

    from devprov.client.webhooks import HEADER, verify_signature

    async def allocate(request):                      # an aiohttp handler, say
        raw = await request.read()
        if not verify_signature(raw, request.headers.get(HEADER), SECRET):
            return web.Response(status=401)
        body = json.loads(raw)
        ...

A request older (or newer) than `tolerance_seconds` (default 300) is refused, so a captured
request cannot be replayed later. Without devprov installed, the check is these few lines::

    t, v1 = (dict(p.split("=", 1) for p in header.split(","))[k] for k in ("t", "v1"))
    ok = abs(time.time() - int(t)) <= 300 and hmac.compare_digest(
        v1, hmac.new(SECRET.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest())
"""

from devprov.protocol.signature import HEADER, signature_header, verify_signature

__all__ = ["HEADER", "signature_header", "verify_signature"]

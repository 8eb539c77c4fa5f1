"""No secret in any answer of the dashboard API: provider keys, client keys, passwords.

Every GET route the app has is called (as found in its URL map), after calls that put each kind
of secret into the gateway's hands; no answer may contain one, in any form we store or log.
"""

from __future__ import annotations

import httpx

from proxy.service import RunningService
from tests.conftest import ADMIN_PASSWORD, StartGateway, logged, sdk, signed_in
from tests.test_api_roles import api_routes

PROVIDER_KEY = "sk-provider-secret-0123456789abcdefWXYZ"
HELLO = [{"role": "user", "content": "hello there gateway"}]


async def test_no_answer_holds_a_secret(start_gateway: StartGateway) -> None:
    gateway: RunningService = await start_gateway(
        {
            "providers": {
                "openai": {"api_key": PROVIDER_KEY, "base_url": "http://127.0.0.1:9/v1"},
                "mock": {"enabled": True},
            }
        }
    )
    async with signed_in(gateway) as admin:
        made = await admin.post("/api/clients", json={"name": "secret-keeper"})
        assert made.status_code == 201, made.text
        client_key = made.json()["token"]
        client_id = made.json()["client"]["id"] if "client" in made.json() else made.json()["id"]
        await sdk(gateway, client_key).chat.completions.create(model="mock", messages=HELLO)
        await logged(gateway)
        secrets = [PROVIDER_KEY, PROVIDER_KEY[-12:], client_key, client_key[8:], ADMIN_PASSWORD]
        answers: dict[str, str] = {}
        for method, path in api_routes(gateway):
            if method != "GET":
                continue
            path = path.replace("no-such-id", client_id).replace("no-such-client_id", client_id)
            answer = await admin.get(path)
            answers[path] = answer.text
        assert len(answers) >= 10
        for path, text in answers.items():
            for secret in secrets:
                assert secret not in text, (path, secret[:6])
    async with httpx.AsyncClient(base_url=gateway.base_url) as anonymous:
        for path in ("/healthz", "/readyz", "/v1/models"):
            text = (
                await anonymous.get(path, headers={"authorization": f"Bearer {client_key}"})
            ).text
            assert PROVIDER_KEY not in text
            assert client_key not in text

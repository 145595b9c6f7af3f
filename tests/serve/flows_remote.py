"""A served workflow whose provider is an OpenAI-compatible server with an API key.

The test that serves it names the server and the key in the environment (the key is a fake,
which the test's hostile server echoes back in its 401 answer, as careless servers do).
"""

from __future__ import annotations

import os
from typing import Any

import agtl
from agtl_openai import OpenAIProvider

agtl_provider = OpenAIProvider(
    api_key=os.environ["AGTL_TEST_API_KEY"], base_url=os.environ["AGTL_TEST_BASE_URL"]
)


async def ask(session: agtl.Session, input: Any) -> str:
    reply = await session.generate_text(prompt="hi", model=str(input["model"]))
    return reply.text

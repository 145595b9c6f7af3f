"""`make demo`: what agtl is for, in a few seconds, with no network.

The bundled local model streams a live reply and has one stopped by a timeout; the scripted
provider then walks through summaries, streaming events and every cancellation pattern.
"""

from __future__ import annotations

import trio

from examples import cancellation_patterns, local_model, quickstart, streaming_events


async def main() -> None:
    print("== the bundled local model (SmolLM2-135M, in-process)")
    await local_model.main()
    print("\n== a workflow and its summary")
    await quickstart.main()
    print("\n== streaming events")
    await streaming_events.main()
    print("\n== cancellation patterns")
    await cancellation_patterns.main()


if __name__ == "__main__":
    trio.run(main)

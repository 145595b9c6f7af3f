"""`make demo`: what agtl is for, in a few seconds, on the scripted provider.

The local llama.cpp provider replaces the scripted one as the demo's default once it lands.
"""

from __future__ import annotations

import trio

from examples import cancellation_patterns, quickstart, streaming_events


async def main() -> None:
    print("== a workflow and its summary")
    await quickstart.main()
    print("\n== streaming events")
    await streaming_events.main()
    print("\n== cancellation patterns")
    await cancellation_patterns.main()


if __name__ == "__main__":
    trio.run(main)

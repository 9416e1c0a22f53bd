"""Several generations at once on one pipeline: slots, their Target views, and continuous batching.

    slots.py        what each concurrent generation owns (target view, prompt cache, drafter, policy)
    slot_target.py  one slot's view of the shared pipeline (the speculation Target protocol)
    batcher.py      merges the slots' runs into native batches (the waiting slot thread drives the pipeline)
"""

"""transformers_neuronx.stopping_criteria: the same three classes and call convention as the real module.

sample() calls the list with (input_ids, probs) after each new token and stops when any criterion is true.
"""

import time


class StoppingCriteria:
    def __call__(self, input_ids, scores, **kwargs) -> bool:
        raise NotImplementedError("StoppingCriteria needs to be subclassed")


class MaxTimeCriteria(StoppingCriteria):
    def __init__(self, max_time: float, initial_timestamp: float | None = None):
        self.max_time = max_time
        self.initial_timestamp = time.time() if initial_timestamp is None else initial_timestamp

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return time.time() - self.initial_timestamp > self.max_time


class StoppingCriteriaList(list):
    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return any(criteria(input_ids, scores) for criteria in self)

"""The two entries a front end calls, each traced in MLflow: `reply(...)` with a reviewer's free text,
`press(...)` with a button's operation (the policy's, by name, with what the reviewer saw).

Who understands the text: the rules first (`replies.parse_reply`: yes / no / next / try a <subject>),
then, for what they do not understand, the optional model (`agent.ReviewAgent`). Either way the
answer runs through the policy's operations, which enforce the review's rules.

Approval from text happens only one way: the rules' explicit "yes"/"approve" while a candidate is
shown (`policy.answer`). The model's actions map onto accept/reject subject, reject candidate and
another subject; its `suggest_approval` changes nothing and tells the reviewer how to approve. This
module never calls `policy.approve`, so no prompt can reach it.

Each turn (a reply or a press) is one MLflow run in the "ad-reviews" experiment with a trace: the root
span AGENT, each model request an LLM span, the policy operation a TOOL span, and, when the operation
queried the index, a RETRIEVER span inside it. The run is written in the background
(`MlflowStore.submit`): the turn itself is already in the review log when the reviewer sees it.
"""

from __future__ import annotations

import time
from dataclasses import replace

from assets_pkg.campaigns.operations import Campaigns
from assets_pkg.campaigns.retrieval import query_for
from assets_pkg.review import agent as llm
from assets_pkg.review import events as ev
from assets_pkg.review import policy, replies
from assets_pkg.review.policy import Turn
from assets_pkg.review.state import ReviewState
from assets_pkg.tracking import TRACES_EXPERIMENT, RunRecord, Step

EXPERIMENT = "ad-reviews"
EXPERIMENT_DESCRIPTION = ("One traced run per review turn in the studio (a button press or a reply): the AGENT "
                          "root, LLM requests, the policy operation as a TOOL span, index queries as RETRIEVER "
                          "spans. Tags: segment, review_id, reviewer.")
# MLflow's span types (mlflow.entities.SpanType), spelled out: importing mlflow costs seconds per process.
AGENT, LLM, TOOL, RETRIEVER = "AGENT", "LLM", "TOOL", "RETRIEVER"


def reply(campaigns: Campaigns, segment_key: str, reviewer: str, text: str,
          agent: llm.ReviewAgent | None = None) -> Turn:
    """Answer the reviewer's `text` for the segment (which must exist: KeyError otherwise)."""
    segment = campaigns.segment(segment_key)
    started = time.time_ns()
    record = RunRecord(experiment=EXPERIMENT, run_name=f"{segment.key}-review-turn", span_type=AGENT,
                       experiment_description=EXPERIMENT_DESCRIPTION, experiment_kind=TRACES_EXPERIMENT,
                       trace_inputs={"segment": segment.key, "reviewer": reviewer, "text": text})
    calls_before = len(agent.calls) if agent else 0
    understood = replies.parse_reply(text).kind != replies.NOT_UNDERSTOOD
    if agent is None or understood:
        action, operation = None, "answer"
        tool_start = time.time_ns()
        turn = policy.answer(campaigns, segment.key, reviewer, text)
        before = turn.before or turn.state
    else:
        before = policy.current_state(campaigns.layout, segment.key)  # what the model reads
        action = agent.interpret(before, segment, text)
        operation = action.tool
        tool_start = time.time_ns()
        turn = _run(campaigns, segment.key, reviewer, text, action, before)
    tool_end = time.time_ns()

    interpreted = agent.calls[calls_before:] if agent else []
    record.steps += [_llm_step(call, parent=None if call.end_ns <= tool_start else operation) for call in interpreted]
    interpreter = "rules" if action is None else "llm"
    tool_inputs = {"interpreter": interpreter, "text": text,
                   **({} if action is None else {"action": action.tool, "rank": action.rank, "subject": action.subject})}
    _log_turn(campaigns, record, reviewer, before, turn, operation, tool_inputs, (started, tool_start, tool_end),
              interpreter, {"model": agent.model} if agent else {})
    return turn


# What a button may ask: the policy's operations, by the name the trace shows. Never a generation.
BUTTONS = {"start": policy.start, "accept_subject": policy.accept_subject, "reject_subject": policy.reject_subject,
           "reject_candidate": policy.reject_candidate, "another_subject": policy.another_subject,
           "approve": policy.approve}


def press(campaigns: Campaigns, segment_key: str, reviewer: str, operation: str, **arguments) -> Turn:
    """A button's policy operation (a name in BUTTONS) with what the reviewer saw (`subject`, `rank`, `text`)."""
    segment = campaigns.segment(segment_key)
    record = RunRecord(experiment=EXPERIMENT, run_name=f"{segment.key}-review-turn", span_type=AGENT,
                       experiment_description=EXPERIMENT_DESCRIPTION, experiment_kind=TRACES_EXPERIMENT,
                       trace_inputs={"segment": segment.key, "reviewer": reviewer, "button": operation,
                                     **arguments})
    started = time.time_ns()
    turn = BUTTONS[operation](campaigns, segment.key, reviewer, **arguments)
    ended = time.time_ns()
    # The state before and the events appended come with the turn, read under the log's lock: no re-read.
    _log_turn(campaigns, record, reviewer, turn.before or turn.state, turn, operation,
              {"interpreter": "button", **arguments}, (started, started, ended), "button", {})
    return turn


def _log_turn(campaigns: Campaigns, record: RunRecord, reviewer: str, before: ReviewState, turn: Turn,
              operation: str, tool_inputs: dict, times: tuple[int, int, int], interpreter: str,
              params: dict) -> None:
    """The turn's run and trace: the operation as a TOOL span with the retrievals it made inside it."""
    started, tool_start, tool_end = times
    key = before.segment_key
    outcome = {"done": turn.done, "message": turn.message, "phase": turn.state.phase}
    record.steps.append(Step(name=operation, span_type=TOOL, start_ns=tool_start, end_ns=tool_end,
                             inputs=tool_inputs, outputs=outcome))
    record.steps += _retrievals(turn.new_events, operation, tool_start, tool_end)
    review_id = turn.state.review_id or before.review_id or ""
    record.tags = {"segment": key, "review_id": review_id, "reviewer": reviewer[:100], "interpreter": interpreter}
    record.trace_tags = dict(record.tags)
    record.params = {"segment": key, "phase_before": before.phase, "operation": operation, **params}
    record.metrics = {"latency_s": (tool_end - started) / 1e9, "done": float(turn.done)}
    record.trace_outputs = outcome
    campaigns.tracking.submit(record)  # the reviewer does not wait for the audit trail: the turn is logged


def _run(campaigns: Campaigns, key: str, reviewer: str, text: str, action: llm.Action,
         before: ReviewState) -> Turn:
    """The model's checked action as a policy operation; the policy refuses what does not fit now."""
    if action.tool == llm.ACCEPT_SUBJECT:
        return policy.accept_subject(campaigns, key, reviewer, subject=before.subject, said=text)
    if action.tool == llm.REJECT_SUBJECT:
        return policy.reject_subject(campaigns, key, reviewer, subject=before.subject, said=text)
    if action.tool == llm.REJECT_CANDIDATE:
        rank = action.rank if action.rank is not None else before.shown_rank
        return policy.reject_candidate(campaigns, key, reviewer, rank=rank, said=text)
    if action.tool == llm.ANOTHER_SUBJECT:
        return policy.another_subject(campaigns, key, reviewer, text=action.subject, said=text)
    if action.tool == llm.SUGGEST_APPROVAL:
        shown = before.candidate(action.rank) if action.rank else before.shown
        which = f"candidate #{shown.rank}" if shown else "a candidate"
        return Turn(False, f"That sounds like approval of {which}; only you can approve it: press Approve or "
                           f"reply 'approve'. {policy.describe(before)}", before)
    # Not understood: recorded as said, like any unclear reply (the rules do not understand it either).
    turn = policy.answer(campaigns, key, reviewer, text)
    return replace(turn, done=False, message=f"{action.why[:1].upper()}{action.why[1:]}. {turn.message}")


def _llm_step(call: llm.LlmCall, parent: str | None) -> Step:
    return Step(name=f"llm_{call.purpose}", span_type=LLM, start_ns=call.start_ns, end_ns=call.end_ns,
                parent=parent, inputs={"model": call.model, "messages": call.messages, "tools": call.tools},
                outputs={"answer": call.answer, "error": call.error})


def _retrievals(new_events: tuple[dict, ...], operation: str, start_ns: int, end_ns: int) -> list[Step]:
    """A RETRIEVER span per index query the operation made (its candidates_retrieved events). The query ran
    inside the policy operation, which does not time it apart: the span covers the operation."""
    return [Step(name="retrieve_top3", span_type=RETRIEVER, start_ns=start_ns, end_ns=end_ns, parent=operation,
                 inputs={"subject": e["subject"], "query": query_for(e["subject"])},
                 outputs={"candidates": [{"rank": c.rank, "path": c.path, "score": round(c.score, 4)}
                                         for c in ev.parse_candidates(e["candidates"])]})
            for e in new_events if e["event"] == ev.CANDIDATES_RETRIEVED]

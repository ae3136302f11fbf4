"""The review loop's rules, as the operations a front end calls (the studio page, a chat agent, a test).

propose a subject -> yes -> top 3 retrieved once, #1 shown -> no -> #2 -> no -> #3 -> no -> a new
subject (never one rejected in this review) retrieved at once: exactly one query -> approve.

The rules are here, in code, whoever asks: a candidate answer never queries the index (the candidates
are read from the log); only `approve` records a choice, and it generates nothing (a Dagster run
makes the ad later); a step that does not fit the current state (two reviewers answered the same
candidate, an approval before any candidate) changes nothing and says why. Every operation returns
a `Turn`: whether it happened, a sentence for the reviewer, and the state after it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from assets_pkg.campaigns.approvals import segment_digest
from assets_pkg.campaigns.operations import Campaigns, propose_subject, retrieve_top3
from assets_pkg.campaigns.segments import Segment
from assets_pkg.campaigns.subjects import NoSubjectLeft
from assets_pkg.layout import DataLayout
from assets_pkg.review import events as ev
from assets_pkg.review import replies
from assets_pkg.review.events import Candidate, NewEvent, SegmentLog, read_events, segment_log
from assets_pkg.review.state import (
    APPROVED,
    AWAITING_CANDIDATE,
    AWAITING_SUBJECT,
    ApprovedChoice,
    ReviewState,
    derive_state,
    latest_approval,
)

REVIEWER_SUBJECT = "reviewer"  # the `note` of a proposal the reviewer typed


@dataclass(frozen=True)
class Turn:
    done: bool  # False: the step did not fit (nothing changed, apart from a recorded unclear reply)
    message: str
    state: ReviewState
    before: ReviewState | None = None  # the state the step started from, read under the log's lock
    new_events: tuple[dict, ...] = ()  # what the step appended to the log (e.g. its index query's candidates)


def current_state(layout: DataLayout, segment_key: str) -> ReviewState:
    return derive_state(segment_key, read_events(layout, segment_key))


def approved_choice(layout: DataLayout, segment_key: str) -> ApprovedChoice | None:
    """The segment's last approved subject and photo; None before any approval."""
    return latest_approval(segment_key, read_events(layout, segment_key))


def start(campaigns: Campaigns, segment_key: str, reviewer: str) -> Turn:
    """Open a review with a proposed subject; a review already open is joined, not restarted."""
    segment = campaigns.segment(segment_key)
    with segment_log(campaigns.layout, segment.key) as log:
        state = _state(log)
        if state.is_open:
            return Turn(True, describe(state), state, before=state)
        review_id = uuid.uuid4().hex
        log.append(reviewer, [NewEvent(review_id, ev.REVIEW_STARTED),
                              *_proposal(campaigns, segment, review_id, exclude=())])
        return _done(log)


def accept_subject(campaigns: Campaigns, segment_key: str, reviewer: str, subject: str | None = None,
                   said: str | None = None) -> Turn:
    """Yes to the proposed subject: its top 3 (one index query), #1 shown. `subject`: the one the
    reviewer saw, so a yes meant for a subject that has since changed does nothing."""
    segment = campaigns.segment(segment_key)
    with segment_log(campaigns.layout, segment.key) as log:
        state = _state(log)
        if refused := _not_the_subject_shown(state, subject):
            return refused
        try:
            retrieved = _retrieval(campaigns, segment, state.review_id, state.subject)
        except LookupError as err:
            return _refused(state, f"{err}; say no or name another subject")
        log.append(reviewer, [NewEvent(state.review_id, ev.SUBJECT_ACCEPTED, subject=state.subject, note=said),
                              retrieved])
        return _done(log)


def reject_subject(campaigns: Campaigns, segment_key: str, reviewer: str, subject: str | None = None,
                   said: str | None = None) -> Turn:
    """No to the proposed subject: another proposal (never a rejected one), nothing retrieved yet."""
    segment = campaigns.segment(segment_key)
    with segment_log(campaigns.layout, segment.key) as log:
        state = _state(log)
        if refused := _not_the_subject_shown(state, subject):
            return refused
        rejected = (*state.rejected_subjects, state.subject)
        log.append(reviewer, [NewEvent(state.review_id, ev.SUBJECT_REJECTED, subject=state.subject,
                                       note=said or "reviewer said no to the subject"),
                              *_proposal(campaigns, segment, state.review_id, exclude=rejected)])
        return _done(log)


def _not_the_subject_shown(state: ReviewState, subject: str | None) -> Turn | None:
    """A refusal when no subject waits for an answer, or the answer was meant for an earlier one."""
    if state.phase != AWAITING_SUBJECT:
        return _refused(state, "no subject is waiting for an answer")
    if subject is not None and subject != state.subject:
        return _refused(state, f"the subject is now {state.subject!r}")
    return None


def reject_candidate(campaigns: Campaigns, segment_key: str, reviewer: str, rank: int | None = None,
                     said: str | None = None) -> Turn:
    """Not quite: the next of the three, read from the log (no query). After the last one, the subject
    is rejected and a new one (never a rejected one) is proposed and retrieved: exactly one query.
    `rank`: the candidate the reviewer saw (1-3), so two answers to one candidate count once."""
    segment = campaigns.segment(segment_key)
    with segment_log(campaigns.layout, segment.key) as log:
        state = _state(log)
        if state.phase != AWAITING_CANDIDATE or state.shown_rank is None:
            return _refused(state, "no candidate is shown")
        if rank is not None and rank != state.shown_rank:
            return _refused(state, f"candidate #{rank} was already answered; #{state.shown_rank} is shown")
        new = [NewEvent(state.review_id, ev.CANDIDATE_REJECTED, subject=state.subject,
                        candidate_rank=state.shown_rank, note=said)]
        turned_down = {*state.rejected_ranks, state.shown_rank}
        if all(c.rank in turned_down for c in state.candidates):
            rejected = (*state.rejected_subjects, state.subject)
            new.append(NewEvent(state.review_id, ev.SUBJECT_REJECTED, subject=state.subject,
                                note=f"all {len(state.candidates)} candidates rejected"))
            proposal = _proposal(campaigns, segment, state.review_id, exclude=rejected)
            if proposal:
                new += [*proposal, _retrieval(campaigns, segment, state.review_id, proposal[0].subject)]
        log.append(reviewer, new)
        return _done(log)


def another_subject(campaigns: Campaigns, segment_key: str, reviewer: str, text: str | None = None,
                    said: str | None = None) -> Turn:
    """Leave the current subject (it counts as rejected). With `text`, the subject the reviewer typed,
    cleaned to plain words, is retrieved at once (one query); without, a new subject is proposed.
    Text that is no subject is recorded as said and changes nothing."""
    segment = campaigns.segment(segment_key)
    with segment_log(campaigns.layout, segment.key) as log:
        state = _state(log)
        if not state.is_open:
            return _refused(state, "no review is open: start one first")
        new = []
        if state.subject is not None:
            new.append(NewEvent(state.review_id, ev.SUBJECT_REJECTED, subject=state.subject,
                                note=said or "reviewer asked for another subject"))
        rejected = (*state.rejected_subjects, *([state.subject] if state.subject else []))
        if text is None:
            new += _proposal(campaigns, segment, state.review_id, exclude=rejected)
        else:
            try:
                subject = replies.clean_subject(text)
                retrieved = _retrieval(campaigns, segment, state.review_id, subject)
            except (replies.InvalidSubject, LookupError) as err:
                log.append(reviewer, [NewEvent(state.review_id, ev.REPLY_NOT_UNDERSTOOD, note=said or text)])
                return _refused(_state(log), str(err))
            new += [NewEvent(state.review_id, ev.SUBJECT_PROPOSED, subject=subject, note=REVIEWER_SUBJECT),
                    NewEvent(state.review_id, ev.SUBJECT_ACCEPTED, subject=subject, note=said), retrieved]
        log.append(reviewer, new)
        return _done(log)


def approve(campaigns: Campaigns, segment_key: str, reviewer: str, rank: int | None = None,
            said: str | None = None, subject: str | None = None) -> Turn:
    """The reviewer's explicit choice of one of the current subject's candidates (`rank` 1-3, the
    shown one by default; `subject`: the one the reviewer saw, so an approval meant for a subject
    that has since changed does nothing). Records the choice; generates nothing."""
    segment = campaigns.segment(segment_key)
    with segment_log(campaigns.layout, segment.key) as log:
        state = _state(log)
        if state.phase != AWAITING_CANDIDATE:
            return _refused(state, "no candidate is shown to approve")
        if subject is not None and subject != state.subject:
            return _refused(state, f"the subject is now {state.subject!r}")
        rank = state.shown_rank if rank is None else rank
        if not isinstance(rank, int) or isinstance(rank, bool) or state.candidate(rank) is None:
            return _refused(state, f"rank must be one of {[c.rank for c in state.candidates]}")
        chosen = state.candidate(rank)
        log.append(reviewer, [NewEvent(state.review_id, ev.APPROVED, subject=state.subject, candidate_rank=rank,
                                       image_id=chosen.image_id, note=said,
                                       segment_digest=segment_digest(segment))])
        return _done(log)


def answer(campaigns: Campaigns, segment_key: str, reviewer: str, text: str) -> Turn:
    """A typed reply, read by the deterministic parser (`replies`) against the state the reviewer saw.
    Only "yes" to a shown candidate approves; an unclear reply is recorded as said and changes nothing."""
    state = current_state(campaigns.layout, campaigns.segment(segment_key).key)
    reply = replies.parse_reply(text)
    if reply.kind == replies.YES and state.phase == AWAITING_SUBJECT:
        return accept_subject(campaigns, segment_key, reviewer, subject=state.subject, said=text)
    if reply.kind == replies.YES and state.phase == AWAITING_CANDIDATE:
        return approve(campaigns, segment_key, reviewer, rank=state.shown_rank, said=text)
    if reply.kind == replies.NO and state.phase == AWAITING_SUBJECT:
        return reject_subject(campaigns, segment_key, reviewer, subject=state.subject, said=text)
    if reply.kind == replies.NO and state.phase == AWAITING_CANDIDATE:
        return reject_candidate(campaigns, segment_key, reviewer, rank=state.shown_rank, said=text)
    if reply.kind == replies.ANOTHER_SUBJECT and state.is_open:
        return another_subject(campaigns, segment_key, reviewer, text=reply.subject, said=text)
    with segment_log(campaigns.layout, segment_key) as log:
        log.append(reviewer, [NewEvent(_state(log).review_id, ev.REPLY_NOT_UNDERSTOOD, note=text)])
        after = _state(log)
    why = "not understood" if reply.kind == replies.NOT_UNDERSTOOD else "that reply does not fit now"
    return _refused(after, f"{why}: reply yes, no (or next), another subject, or try a <subject>")


def describe(state: ReviewState) -> str:
    """One sentence for the reviewer: where the review stands and what answers fit."""
    if state.phase == AWAITING_SUBJECT:
        return f"Proposed subject: {state.subject}. Does it fit? (yes / no / try a <subject>)"
    if state.phase == AWAITING_CANDIDATE and state.shown is not None:
        shown = state.shown
        return (f"Candidate #{shown.rank} of {len(state.candidates)} for {state.subject} "
                f"(score {shown.score:.3f}). Approve it? (yes / next / another subject)")
    if state.approved is not None and state.phase == APPROVED:
        return f"Approved candidate #{state.approved.rank} for {state.approved.subject}."
    if state.is_open:
        return "Every subject on offer was turned down: name one (try a <subject>)."
    return "No review is open."


def _state(log: SegmentLog) -> ReviewState:
    return derive_state(log.segment_key, log.events)


def _done(log: SegmentLog) -> Turn:
    state = _state(log)
    before = derive_state(log.segment_key, log.events[:log.read])
    return Turn(True, describe(state), state, before=before, new_events=tuple(log.events[log.read:]))


def _refused(state: ReviewState, why: str) -> Turn:
    return Turn(False, f"{why[:1].upper()}{why[1:]}. {describe(state)}", state, before=state)


def _proposal(campaigns: Campaigns, segment: Segment, review_id: str, exclude: tuple[str, ...]) -> list[NewEvent]:
    """The next proposed subject's event; none when every subject on offer was rejected."""
    try:
        proposal = propose_subject(campaigns, segment, exclude=exclude)
    except NoSubjectLeft:
        return []
    return [NewEvent(review_id, ev.SUBJECT_PROPOSED, subject=proposal.subject, note=proposal.method)]


def _retrieval(campaigns: Campaigns, segment: Segment, review_id: str, subject: str) -> NewEvent:
    """The subject's top 3 as an event: the one index query of this subject, numbered 1-3."""
    found = retrieve_top3(campaigns, segment, subject)
    candidates = tuple(Candidate(rank=n, image_id=h.image_id, path=h.path, score=float(h.score))
                       for n, h in enumerate(found.hits, start=1))
    return NewEvent(review_id, ev.CANDIDATES_RETRIEVED, subject=subject, candidate_rank=1, candidates=candidates)

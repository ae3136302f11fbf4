"""The review studio: a thin Streamlit page over `assets_pkg.review` and `orchestration.review_runs`.

Started by `adrag studio`, which passes the project's settings (data directory, CLIP model, ...) and
DAGSTER_HOME in this process's environment. Every button passes what the reviewer saw (the subject,
the candidate's rank), so an answer to something that has since changed is refused by the policy.
An approval launches the segment's partition run; its status is polled and the ad shown when done.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import streamlit as st

from assets_pkg.campaigns.operations import Campaigns, latest_campaign
from assets_pkg.review import conversation, policy
from assets_pkg.review.agent import LlmSettings, build_agent
from assets_pkg.review.events import read_events
from assets_pkg.review.state import AWAITING_CANDIDATE, AWAITING_SUBJECT
from orchestration.review_runs import DONE, FAILED, launch_approved, run_status
from orchestration.runner import Project

TOKEN_SETTING = "ADRAG_STUDIO_TOKEN"


@st.cache_resource
def project() -> Project:
    return Project({}, Path(os.environ["DAGSTER_HOME"]))  # settings come from the environment `adrag studio` set


@st.cache_resource
def instance():
    return project().instance()


@st.cache_resource
def encoder():
    return project().current["clip"].encoder()


def campaigns() -> Campaigns:
    p = project()
    return Campaigns(p.layout, p.current["mlflow_tracking"].store(p.layout), encoder,
                     diversity=p.current["candidate_diversity"].diversity)


def show(turn: policy.Turn) -> None:
    st.session_state["message"] = (turn.done, turn.message)


# --- what the buttons do (their arguments are what the reviewer saw) ----------------------------------

def on_start(key: str, reviewer: str) -> None:
    st.session_state.pop("run_id", None)
    show(policy.start(campaigns(), key, reviewer))


def on_accept(key: str, reviewer: str, subject: str) -> None:
    show(policy.accept_subject(campaigns(), key, reviewer, subject=subject))


def on_another(key: str, reviewer: str) -> None:
    text = (st.session_state.get("another_text") or "").strip() or None
    show(policy.another_subject(campaigns(), key, reviewer, text=text))


def on_reject_candidate(key: str, reviewer: str, rank: int) -> None:
    show(policy.reject_candidate(campaigns(), key, reviewer, rank=rank))


def on_approve(key: str, reviewer: str, rank: int, subject: str) -> None:
    state = policy.current_state(campaigns().layout, key)
    if state.subject != subject:  # approve takes a rank only: the subject must still be the one seen
        show(policy.Turn(False, f"The subject is now {state.subject!r}. {policy.describe(state)}", state))
        return
    turn = policy.approve(campaigns(), key, reviewer, rank=rank)
    show(turn)
    if turn.done:
        launch(key)


def launch(key: str) -> None:
    try:
        launched = launch_approved(instance(), project().defs, project().layout, key)
    except LookupError as err:
        st.session_state["message"] = (False, str(err))
        return
    st.session_state["run_id"] = launched.run_id


def on_chat(key: str, reviewer: str) -> None:
    text = (st.session_state.get("chat_text") or "").strip()
    if not text:
        return
    agent = build_agent(LlmSettings.from_env(os.environ))
    turn = conversation.reply(campaigns(), key, reviewer, text, agent=agent)
    show(turn)
    if turn.done and turn.state.phase == "approved":
        launch(key)


# --- the page ------------------------------------------------------------------------------------------

def picture(path: str, layout) -> str | None:
    found = Path(path) if Path(path).is_absolute() else layout.images_dir / path
    return str(found) if found.is_file() else None


@st.fragment(run_every=2)
def run_panel(key: str) -> None:
    run_id = st.session_state.get("run_id")
    if not run_id:
        return
    status, why = run_status(instance(), run_id)
    st.markdown(f"**Run** `{run_id}`: **{status}**")
    if status == FAILED:
        st.error(why or "the run failed")
    elif status == DONE:
        row = latest_campaign(project().layout, key)
        if row and row.get("output_path"):
            st.image(row["output_path"], caption=f"Ad for {key}", width=512)


def main() -> None:
    st.set_page_config(page_title="adrag review studio", layout="wide")
    st.title("Review studio")

    token = os.environ.get(TOKEN_SETTING, "")
    if token and not st.session_state.get("authorised"):
        given = st.text_input("Studio token", type="password")
        if given and hmac.compare_digest(given.encode(), token.encode()):
            st.session_state["authorised"] = True
            st.rerun()
        if given:
            st.error("Wrong token.")
        st.stop()

    c = campaigns()
    segments = c.segments.segments
    if not segments:
        st.warning(f"No segments in {c.layout.segments_file}.")
        st.stop()
    names = {s.key: f"{s.name} ({s.key})" for s in segments}
    reviewer = st.text_input("Reviewer", key="reviewer").strip()
    key = st.selectbox("Segment", list(names), format_func=names.get, key="segment")
    if not reviewer:
        st.info("Enter your name to review.")
        st.stop()

    state = policy.current_state(c.layout, key)
    if not state.is_open:
        st.button("Start review", on_click=on_start, args=(key, reviewer))

    if message := st.session_state.get("message"):
        done, text = message
        (st.success if done else st.warning)(text)

    if state.phase == AWAITING_SUBJECT:
        st.subheader(f"Proposed subject: {state.subject}")
        st.button("Looks right", on_click=on_accept, args=(key, reviewer, state.subject))
    if state.is_open:
        st.text_input("Another subject (empty: let the studio propose one)", key="another_text")
        st.button("Another subject", on_click=on_another, args=(key, reviewer))

    if state.phase == AWAITING_CANDIDATE and state.shown is not None:
        shown = state.shown
        st.subheader(f"{state.subject}: #{shown.rank} of {len(state.candidates)}")
        st.caption(f"score {shown.score:.3f} · {shown.path}")
        if found := picture(shown.path, c.layout):
            st.image(found, width=480)
        others = [x for x in state.candidates if x.rank != shown.rank]
        for column, other in zip(st.columns(max(len(others), 1)), others):
            with column:
                st.caption(f"#{other.rank} · score {other.score:.3f}")
                if found := picture(other.path, c.layout):
                    st.image(found, width=160)
        left, right = st.columns(2)
        left.button("Looks right → Approve", on_click=on_approve, args=(key, reviewer, shown.rank, state.subject))
        right.button("Not quite", on_click=on_reject_candidate, args=(key, reviewer, shown.rank))

    if state.approved is not None:
        a = state.approved
        st.markdown(f"Approved: **{a.subject}** #{a.rank} by {a.reviewer}")
        if not st.session_state.get("run_id"):
            st.button("Make the ad", on_click=launch, args=(key,))
    run_panel(key)

    with st.form("chat", clear_on_submit=True):
        st.text_input("Say something (yes / next / try a beagle ...)", key="chat_text")
        st.form_submit_button("Send", on_click=on_chat, args=(key, reviewer))

    st.subheader("History")
    events = read_events(c.layout, key)
    if events:
        columns = ["seq", "at", "reviewer", "event", "subject", "candidate_rank", "note"]
        st.dataframe([{k: e.get(k) for k in columns} for e in events], hide_index=True)
    else:
        st.caption("No review events yet.")


main()

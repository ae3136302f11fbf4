"""The review studio: a thin Streamlit page over `assets_pkg.review` and `orchestration.review_runs`.

Started by `adrag studio`, which passes the project's settings (data directory, CLIP model, ...) and
DAGSTER_HOME in this process's environment. Every button passes what the reviewer saw (the subject,
the candidate's rank), so an answer to something that has since changed is refused by the policy.
An approval launches the segment's partition run; its status is polled and the ad shown when done.
Nothing the page shows lives only in the browser session: the review from the log, the run from the
Dagster instance (found by the approval's review id), so a reload, a second reviewer or a restarted
studio sees the same thing.
"""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path

import streamlit as st

from assets_pkg.campaigns.approvals import NEEDS_REVIEW, check_approval
from assets_pkg.campaigns.operations import Campaigns, latest_campaign
from assets_pkg.review import conversation, policy
from assets_pkg.review.agent import LlmSettings, build_agent
from assets_pkg.review.events import read_events
from assets_pkg.review.state import AWAITING_CANDIDATE, AWAITING_SUBJECT
from orchestration.review_runs import DONE, FAILED, launch_approved, run_for_review, run_status
from orchestration.runner import Project

TOKEN_SETTING = "ADRAG_STUDIO_TOKEN"
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: str) -> str:
    """`text` shown as typed where Streamlit renders Markdown (names, messages): no links, images, markup."""
    return _MARKDOWN.sub(r"\\\1", text)


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

def on_press(key: str, reviewer: str, operation: str, **saw) -> None:
    show(conversation.press(campaigns(), key, reviewer, operation, **saw))


def on_another(key: str, reviewer: str) -> None:
    text = (st.session_state.get("another_text") or "").strip() or None
    on_press(key, reviewer, "another_subject", text=text)


def on_approve(key: str, reviewer: str, rank: int, subject: str) -> None:
    turn = conversation.press(campaigns(), key, reviewer, "approve", rank=rank, subject=subject)
    show(turn)
    if turn.done:
        launch(key)


def launch(key: str) -> None:
    try:
        launch_approved(instance(), project().defs, project().layout, key)
    except LookupError as err:
        st.session_state["message"] = (False, str(err))


def on_chat(key: str, reviewer: str) -> None:
    text = (st.session_state.get("chat_text") or "").strip()
    if not text:
        return
    agent = build_agent(LlmSettings.from_env(os.environ))  # None without a model: the rules alone
    turn = conversation.reply(campaigns(), key, reviewer, text, agent=agent)
    show(turn)
    if turn.done and turn.state.phase == "approved":
        launch(key)


# --- the page ------------------------------------------------------------------------------------------

def picture(path: str, layout) -> str | None:
    if not isinstance(layout.images_dir, Path) and not Path(path).is_absolute():
        return None  # the images folder is on object storage: nothing to show from a local path
    found = Path(path) if Path(path).is_absolute() else layout.images_dir / path
    return str(found) if found.is_file() else None


@st.fragment(run_every=2)
def approval_panel(key: str) -> None:
    """The segment's standing approval, whether it still holds, and the run that makes its ad."""
    layout = project().layout
    approved = policy.approved_choice(layout, key)
    if approved is None:
        return
    st.markdown(f"Approved: **{plain(approved.subject)}** #{approved.rank} by {plain(approved.reviewer)}")
    check = check_approval(campaigns().segment(key), approved, layout.mirror_table)
    if check.status == NEEDS_REVIEW:
        st.error(f"Needs review: {plain(check.reason)}. Start a review to approve a photo again.")
        return
    run_id = run_for_review(instance(), approved.review_id)
    status, why = run_status(instance(), run_id) if run_id else (None, None)
    if run_id:
        st.markdown(f"**Run** `{run_id}`: **{status}**")
    if status == FAILED:
        st.error(why or "the run failed")
    if status in (None, FAILED):
        st.button("Make the ad", on_click=launch, args=(key,))
    if status == DONE:
        row = latest_campaign(layout, key)
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
        st.button("Start review", on_click=on_press, args=(key, reviewer, "start"))

    if message := st.session_state.get("message"):
        done, text = message
        (st.success if done else st.warning)(plain(text))

    if state.phase == AWAITING_SUBJECT:
        st.subheader(f"Proposed subject: {state.subject}")
        st.button("Looks right", on_click=on_press, args=(key, reviewer, "accept_subject"),
                  kwargs={"subject": state.subject})
    if state.is_open:
        st.text_input("Another subject (empty: let the studio propose one)", key="another_text")
        st.button("Another subject", on_click=on_another, args=(key, reviewer))

    if state.phase == AWAITING_CANDIDATE and state.shown is not None:
        shown = state.shown
        st.subheader(f"{state.subject}: #{shown.rank} of {len(state.candidates)}")
        st.caption(f"score {shown.score:.3f} · {plain(shown.path)}")
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
        right.button("Not quite", on_click=on_press, args=(key, reviewer, "reject_candidate"),
                     kwargs={"rank": shown.rank})

    approval_panel(key)

    with st.form("chat", clear_on_submit=True):
        st.text_input("Say something (yes / next / try a beagle ...)", key="chat_text")
        st.form_submit_button("Send", on_click=on_chat, args=(key, reviewer))
    llm = LlmSettings.from_env(os.environ)
    if llm.base_url and llm.model:
        st.caption(f"Free text is read by {plain(llm.model)}; it can suggest but never approve.")
    else:
        st.caption(plain("No language model is configured (ADRAG_LLM_BASE_URL, ADRAG_LLM_MODEL): the chat "
                         "understands short replies only: yes, no, next, another subject, try a <subject>."))

    st.subheader("History")
    events = read_events(c.layout, key)
    if events:
        columns = ["seq", "at", "reviewer", "event", "subject", "candidate_rank", "note"]
        st.dataframe([{k: e.get(k) for k in columns} for e in events], hide_index=True)
    else:
        st.caption("No review events yet.")


main()

"""Dashboard sign-in: reading is open (the dashboard binds loopback), promote, roll back and trigger need a signed-in
user, whose name goes with each of those calls to the API, which records it (the version's tags, the run's note).

One account, ``STREAMML_DASHBOARD__ADMIN_USER`` / ``STREAMML_DASHBOARD__ADMIN_PASSWORD`` (generated into ``.env``).
The session keeps only the user's name; the password is compared in constant time and a wrong one costs a second.
"""

from __future__ import annotations

import hmac
import time

import streamlit as st

from streamml.config import Settings

SESSION_USER = "signed_in_user"
WRONG_PASSWORD_DELAY = 1.0  # seconds: guessing is slow


def credentials_match(settings: Settings, user: str, password: str) -> bool:
    d = settings.dashboard
    same_user = hmac.compare_digest(user.encode(), d.admin_user.encode())
    same_password = hmac.compare_digest(password.encode(), d.admin_password.get_secret_value().encode())
    return same_user and same_password


def signed_in() -> str | None:
    """The signed-in user of this browser session, if any."""
    user = st.session_state.get(SESSION_USER)
    return str(user) if user else None


def actor() -> str | None:
    """How the API records the signed-in user: ``dashboard:NAME``."""
    user = signed_in()
    return f"dashboard:{user}" if user else None


def sidebar(settings: Settings) -> None:
    """Sign-in form, or who is signed in and a sign-out button."""
    user = signed_in()
    if user:
        st.caption(f"Signed in as **{user}**")
        if st.button("Sign out", icon=":material/logout:"):
            st.session_state.pop(SESSION_USER, None)
            st.rerun()
        return
    with st.form("sign-in"):
        st.caption("Sign in to promote, roll back or trigger")
        name = st.text_input("User", value=settings.dashboard.admin_user)
        password = st.text_input("Password", type="password", help="STREAMML_DASHBOARD__ADMIN_PASSWORD in .env")
        if st.form_submit_button("Sign in", icon=":material/login:"):
            if credentials_match(settings, name, password):
                st.session_state[SESSION_USER] = name
                st.rerun()
            time.sleep(WRONG_PASSWORD_DELAY)
            st.error("Wrong user or password.")


def sign_in_note(what: str) -> None:
    st.info(f"Sign in (sidebar) to {what}.", icon=":material/lock:")

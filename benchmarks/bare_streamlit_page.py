"""The reference for the viewer's page-ready time (benchmarks/viewer.py): the same Streamlit, served the same
way, drawing only the welcome page's heading and its Open sample button. What it takes to become ready is
Streamlit's own cost on this machine, which no change to the viewer can remove."""

import streamlit as st

st.set_page_config(page_title="Streamlit reference page", layout="wide")
st.markdown("##### Where does the model look?")
st.button("Open the sample radiograph", type="primary")

"""The review studio (a Streamlit page): `adrag studio`."""

"""One module per dashboard page, each with ``render(settings)``; Streamlit is imported only here and below."""

from streamml.cli import app

app(prog_name="streamml")

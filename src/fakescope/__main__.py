from fakescope.cli import app

app(prog_name="fakescope")

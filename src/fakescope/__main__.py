from fakescope.cli import run

run()

from mmfc.cli import app

app()

from refiner.cli import app

app()

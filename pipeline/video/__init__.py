"""Video decoding, frame sampling and the DataLoader-side clip dataset."""

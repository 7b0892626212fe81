"""Photo handling for the stage job: safe decoding, face detection, alignment and quality.

Engine-free: a Spark executor, a benchmark loop and a unit test call the same functions.
"""

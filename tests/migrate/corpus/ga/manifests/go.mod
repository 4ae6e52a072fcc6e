module example.com/voice

go 1.22

require github.com/WqyJh/go-openai-realtime/v2 v2.0.1

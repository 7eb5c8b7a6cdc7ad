module github.com/switchboard/switchboard/internal

go 1.26.0

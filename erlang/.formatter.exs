[inputs: ["{mix,.formatter}.exs", "{lib,test,demo}/**/*.{ex,exs}"]]
